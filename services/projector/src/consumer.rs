//! What the projector adds to the project's consumer runtime ([`platform::consumer`]): how a
//! record is validated ([`crate::event`]) and how a batch of valid ones changes one
//! generation's tables ([`crate::store::apply_batch`]). Lease, checkpoints, batching, the
//! DLQ and the watchdog are the runtime's; each generation runs its own consumer.

use platform::consumer::{Applied, Handler, Rejection, Valid};
use rdkafka::message::OwnedMessage;
use sqlx::PgConnection;

use crate::event::{self, Incoming};
use crate::generations::Generation;
use crate::store;

/// The handler of one generation's consumer.
pub struct Projector {
    /// Whose tables the batches go to.
    generation: Generation,
    /// `generation` as a metrics label.
    label: String,
}

impl Projector {
    pub fn new(generation: Generation) -> Self {
        Self { generation, label: generation.get().to_string() }
    }
}

impl Handler for Projector {
    type Valid = Incoming;
    /// Events applied by the batch.
    type Detail = u64;

    fn validate(&self, msg: &OwnedMessage) -> Result<Incoming, Rejection> {
        event::parse(msg)
    }

    async fn apply_batch(&self, tx: &mut PgConnection, batch: &[Valid<Incoming>]) -> Result<Applied<u64>, sqlx::Error> {
        store::apply_batch(tx, self.generation, batch).await
    }

    fn committed(&self, applied: u64) {
        metrics::counter!("projector_applied_total", "generation" => self.label.clone()).increment(applied);
    }
}
