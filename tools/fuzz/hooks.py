"""schemathesis hooks for Ticket Hub (loaded through SCHEMATHESIS_HOOKS=hooks by fuzz.py).

`Region` is the gateway's own scalar: a region name of shards.toml. Positive cases use the
local stack's regions; unknown names are what negative cases are for.
"""

import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes

schemathesis.graphql.scalar("Region", st.sampled_from(["NA", "SA"]).map(nodes.String))

# The gateway's `extensions.code`s that mean "this request cannot be served as asked"
# (gateway/src/error.rs): a resolver answering one is refusing the client, not failing. schemathesis
# knows only the Apollo/graphql-java names for that; UNAVAILABLE and INTERNAL stay server errors,
# so any of those is a failure.
from schemathesis.specs.graphql import validation

validation.CLIENT_ERROR_MARKERS = validation.CLIENT_ERROR_MARKERS | {
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "SOLD_OUT",
    "INSUFFICIENT_STOCK",
    "REGION_MISMATCH",
}
