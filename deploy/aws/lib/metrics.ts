// How the services' Prometheus metrics reach CloudWatch.
//
// Every service serves Prometheus text on `GET /metrics` (platform::ops, the `metrics` crate's
// exporter); nothing in the services speaks OTLP or CloudWatch. Each task therefore runs the
// AWS Distro for OpenTelemetry collector as a sidecar: its `prometheus` receiver scrapes
// `127.0.0.1:<port>/metrics` every 30 s, and its `awsemf` exporter writes CloudWatch embedded
// metric format records to one log group, from which CloudWatch extracts the metrics declared
// below (namespace `TicketHub`). Only declared metrics become CloudWatch metrics (each costs
// money); everything else stays in the log records, queryable with Logs Insights.
//
// The collector's configuration reaches the sidecar as `AOT_CONFIG_CONTENT`, from an SSM
// parameter per service (see the stack), so it can be changed without a new task definition.

/** The CloudWatch namespace of the services' metrics. */
export const NAMESPACE = 'TicketHub';

/**
 * The metrics the alarms watch, as the Rust code names them. Each CloudWatch metric carries the
 * `service` dimension (a scrape label the collector adds) and the labels listed here.
 */
export const METRICS = {
  /** Gauge per shard: pending outbox rows (`services/orders/src/relay/worker.rs`). */
  relayBacklog: { name: 'orders_relay_backlog', dimensions: ['service', 'shard'] },
  /** Gauge per shard: rows that used up their attempts and went to the DLQ. */
  relayFailedRows: { name: 'orders_relay_failed_rows', dimensions: ['service', 'shard'] },
  /** Gauge per shard: 1 on the process holding the shard's lease, 0 on a standby. */
  relayLeader: { name: 'orders_relay_leader', dimensions: ['service', 'shard'] },
  /**
   * Gauge per partition: partition end minus the stored checkpoint (platform::consumer
   * watchdog). Declared per topic, so a period's Maximum is the worst partition.
   */
  consumerLag: { name: 'notifications_consumer_lag', dimensions: ['service', 'topic'] },
  /** Gauge: 1 while lag is not shrinking for `stall_after_ms`. */
  consumerStalled: { name: 'notifications_consumer_stalled', dimensions: ['service', 'topic'] },
  /**
   * The same runtime's gauges in the projector, one series per generation's consumer
   * (`consumer="projector.g<N>"`, not a dimension): a period's Maximum is the worst partition of
   * any generation, a rebuilding one included.
   */
  projectorLag: { name: 'projector_consumer_lag', dimensions: ['service', 'topic'] },
  projectorStalled: { name: 'projector_consumer_stalled', dimensions: ['service', 'topic'] },
  /**
   * Gauge per rebuilding generation: records read of those in the log, below 1 while a rebuild
   * replays the topic, 1 once switched (services/projector/src/supervisor.rs).
   */
  projectorRebuildProgress: { name: 'projector_rebuild_progress_ratio', dimensions: ['service'] },
  /**
   * Counter of every HTTP answer (platform::correlation), kept for 5xx statuses only: the
   * period's Sum is the service's 5xx answers (the exporter turns counters into deltas).
   */
  http5xx: { name: 'http_requests_total', dimensions: ['service'] },
} as const;

/** The collector configuration for one service's task. */
export function collectorConfig(opts: { service: string; port: number; logGroupName: string }): string {
  const declare = (names: string[], dimensions: readonly string[], extra = ''): string =>
    [
      `      - dimensions: [[${dimensions.join(', ')}]]`,
      `        metric_name_selectors: [${names.map((n) => `"^${n}$"`).join(', ')}]`,
      extra,
    ]
      .filter((l) => l !== '')
      .join('\n');
  const m = METRICS;
  return [
    'extensions:',
    '  health_check: {}',
    'receivers:',
    '  prometheus:',
    '    config:',
    '      global:',
    '        scrape_interval: 30s',
    '        scrape_timeout: 10s',
    '      scrape_configs:',
    `        - job_name: ${opts.service}`,
    '          metrics_path: /metrics',
    '          static_configs:',
    `            - targets: ["127.0.0.1:${opts.port}"]`,
    `              labels: { service: ${opts.service} }`,
    'processors:',
    '  batch:',
    '    timeout: 30s',
    'exporters:',
    '  awsemf:',
    `    namespace: ${NAMESPACE}`,
    `    log_group_name: ${opts.logGroupName}`,
    `    log_stream_name: ${opts.service}/{TaskId}`,
    '    dimension_rollup_option: NoDimensionRollup',
    '    metric_declarations:',
    declare([m.relayBacklog.name, m.relayFailedRows.name, m.relayLeader.name], m.relayBacklog.dimensions),
    declare([m.consumerLag.name, m.consumerStalled.name, m.projectorLag.name, m.projectorStalled.name], m.consumerLag.dimensions),
    declare([m.projectorRebuildProgress.name], m.projectorRebuildProgress.dimensions),
    declare(
      [m.http5xx.name],
      m.http5xx.dimensions,
      ['        label_matchers:', '          - label_names: [status]', '            regex: "^5[0-9][0-9]$"'].join('\n'),
    ),
    'service:',
    '  extensions: [health_check]',
    '  pipelines:',
    '    metrics:',
    '      receivers: [prometheus]',
    '      processors: [batch]',
    '      exporters: [awsemf]',
    '',
  ].join('\n');
}
