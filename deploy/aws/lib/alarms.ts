// Alarms on what matters: the relay keeping up on each shard, the notifications and projector
// consumers keeping up, and 5xx answers. All go to one SNS topic (an email subscription with the
// `alarmEmail` context value).

import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { METRICS, NAMESPACE } from './metrics';
import { Settings } from './settings';
import { Shard, shardId } from './shards';

export class Alarms extends Construct {
  readonly topic: sns.Topic;

  constructor(
    scope: Construct,
    id: string,
    props: { settings: Settings; shards: Shard[]; alb: elbv2.ApplicationLoadBalancer; targets: elbv2.ApplicationTargetGroup },
  ) {
    super(scope, id);
    const { settings } = props;
    this.topic = new sns.Topic(this, 'Topic', { displayName: `Ticket Hub ${settings.stage} alarms` });
    if (settings.alarmEmail !== undefined) {
      this.topic.addSubscription(new subscriptions.EmailSubscription(settings.alarmEmail));
    }
    const notify = new actions.SnsAction(this.topic);
    const metric = (name: string, dimensionsMap: Record<string, string>, statistic: string, period = Duration.minutes(1)) =>
      new cloudwatch.Metric({ namespace: NAMESPACE, metricName: name, dimensionsMap, statistic, period });
    const alarm = (aid: string, props: cloudwatch.AlarmProps) => {
      const a = new cloudwatch.Alarm(this, aid, props);
      a.addAlarmAction(notify);
      a.addOkAction(notify);
      return a;
    };

    for (const shard of props.shards) {
      const dims = { service: 'orders-relay', shard: shard.name };
      const sid = shardId(shard.name);
      alarm(`RelayBacklog${sid}`, {
        alarmDescription: `Shard ${shard.name}: more than ${settings.relayBacklogAlarm} outbox rows pending for 5 minutes (orders_relay_backlog): the relay is not keeping up or cannot publish`,
        metric: metric(METRICS.relayBacklog.name, dims, 'Maximum'),
        threshold: settings.relayBacklogAlarm,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        datapointsToAlarm: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      // The lease rule seen from outside: some relay task of the shard reports leader = 1.
      // Missing data is breaching: no relay reporting at all is the worst case.
      alarm(`RelayNoLeader${sid}`, {
        alarmDescription: `Shard ${shard.name}: no relay has held the outbox lease for 3 minutes (orders_relay_leader): nothing publishes this shard's events`,
        metric: metric(METRICS.relayLeader.name, dims, 'Maximum'),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 3,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      alarm(`RelayFailedRows${sid}`, {
        alarmDescription: `Shard ${shard.name}: outbox rows went to orders.events.dlq (orders_relay_failed_rows > 0): see orders-relay status, then reprocess`,
        metric: metric(METRICS.relayFailedRows.name, dims, 'Maximum', Duration.minutes(5)),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    const consumer = { service: 'notifications', topic: 'orders.events' };
    alarm('ConsumerLag', {
      alarmDescription: `notifications: a partition of orders.events more than ${settings.consumerLagAlarm} records behind its checkpoint for 5 minutes (notifications_consumer_lag)`,
      metric: metric(METRICS.consumerLag.name, consumer, 'Maximum'),
      threshold: settings.consumerLagAlarm,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      datapointsToAlarm: 5,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    alarm('ConsumerStalled', {
      alarmDescription: 'notifications: lag without progress (notifications_consumer_stalled = 1) for 2 minutes',
      metric: metric(METRICS.consumerStalled.name, consumer, 'Maximum'),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 2,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    // The projector: the same runtime, one consumer per generation. A rebuild replays the whole
    // topic in a BUILDING generation whose lag starts at the log's length, so the lag alarm
    // reads 0 while a rebuild replays (its progress below 0.99; not 1: the gauge keeps its last
    // value after a switch made by another process or by `projector switch`, a caught-up value
    // just under 1 that must not silence the alarm). A consumer of any generation that stops
    // making progress is the stalled alarm's, rebuild or not.
    const projector = { service: 'projector', topic: 'orders.events' };
    alarm('ProjectorConsumerLag', {
      alarmDescription: `projector: a partition of orders.events more than ${settings.consumerLagAlarm} records behind its checkpoint for 5 minutes, outside a rebuild (projector_consumer_lag): the read models fall behind`,
      metric: new cloudwatch.MathExpression({
        expression: 'IF(FILL(rebuild, 1) < 0.99, 0, lag)',
        usingMetrics: {
          lag: metric(METRICS.projectorLag.name, projector, 'Maximum'),
          rebuild: metric(METRICS.projectorRebuildProgress.name, { service: 'projector' }, 'Minimum'),
        },
        period: Duration.minutes(1),
        label: 'worst partition lag outside a rebuild',
      }),
      threshold: settings.consumerLagAlarm,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      datapointsToAlarm: 5,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    alarm('ProjectorConsumerStalled', {
      alarmDescription: 'projector: a generation\'s consumer has lag without progress (projector_consumer_stalled = 1) for 2 minutes',
      metric: metric(METRICS.projectorStalled.name, projector, 'Maximum'),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 2,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    // 5xx as clients see them: the load balancer's own (no healthy gateway) and the gateway's.
    const five = Duration.minutes(5);
    alarm('Alb5xxRate', {
      alarmDescription: `More than ${settings.http5xxPercentAlarm} % of the load balancer's answers were 5xx over 10 minutes`,
      metric: new cloudwatch.MathExpression({
        expression: 'IF(requests > 0, 100 * (FILL(target, 0) + FILL(elb, 0)) / requests, 0)',
        usingMetrics: {
          requests: props.alb.metrics.requestCount({ period: five, statistic: 'Sum' }),
          target: props.alb.metrics.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, { period: five, statistic: 'Sum' }),
          elb: props.alb.metrics.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, { period: five, statistic: 'Sum' }),
        },
        period: five,
        label: 'percent 5xx',
      }),
      threshold: settings.http5xxPercentAlarm,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 2,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm('GatewayUnhealthy', {
      alarmDescription: 'No gateway task has passed /readyz for 3 minutes',
      metric: props.targets.metrics.healthyHostCount({ period: Duration.minutes(1), statistic: 'Minimum' }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    // Each service's own 5xx answers (orders answers 503 while a shard is down, on purpose:
    // that is worth an alarm too).
    for (const service of ['gateway', 'accounts', 'orders', 'notifications', 'projector']) {
      alarm(`Http5xx${shardId(service)}`, {
        alarmDescription: `${service}: more than ${settings.service5xxAlarm} 5xx answers in 5 minutes (http_requests_total, status 5xx)`,
        metric: metric(METRICS.http5xx.name, { service }, 'Sum', five),
        threshold: settings.service5xxAlarm,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
  }
}
