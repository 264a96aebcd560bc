// Deployment settings: CDK context values (`cdk.json`, `-c key=value`) with the defaults below.
//
// The defaults are the smallest footprint that still runs every part for real (one task per
// service, single-AZ databases on the smallest Graviton class, a two-broker Kafka cluster); the
// cost estimate in docs/aws.md is for exactly these values.

import * as path from 'node:path';
import { Node } from 'constructs';

export interface Settings {
  /** Names the stack (`TicketHub-<stage>`), its secrets and parameters (`/ticket-hub/<stage>/…`). */
  readonly stage: string;
  /** The shard map read at synth time: one RDS instance and one relay service per shard. */
  readonly shardsFile: string;
  /**
   * The ECR repository holding the image built from `compose/Dockerfile` (made before the
   * stack, so the image can be pushed before the services need it). Its tag is the stack
   * parameter `ImageTag`.
   */
  readonly imageRepository: string;
  /** The image's CPU architecture: `X86_64` (default) or `ARM64`, as it was built. */
  readonly cpuArchitecture: 'X86_64' | 'ARM64';
  /** RDS class of every instance, global and shards (default `t4g.micro`). */
  readonly dbInstanceClass: string;
  readonly dbStorageGb: number;
  readonly dbMultiAz: boolean;
  /** ElastiCache node type (default `cache.t4g.micro`). */
  readonly redisNodeType: string;
  /** MSK broker type and count (default two `kafka.t3.small`, one per AZ). */
  readonly kafkaInstanceType: string;
  readonly kafkaBrokers: number;
  readonly kafkaVolumeGb: number;
  /** Tasks of gateway, accounts and orders (default 1 each). */
  readonly serviceTasks: number;
  /**
   * Standby relay tasks per shard beyond the one that publishes (default 0). Whatever the
   * number, the shard's advisory-lock lease lets exactly one publish.
   */
  readonly relayStandbys: number;
  /** An ACM certificate for HTTPS on the load balancer; without it the listener is HTTP. */
  readonly certificateArn?: string;
  /** Who may reach the load balancer (default everyone). */
  readonly allowedCidr: string;
  /** Subscribed to the alarm topic when set. */
  readonly alarmEmail?: string;
  /** The collector sidecar that turns each service's `/metrics` into CloudWatch metrics. */
  readonly otelCollectorImage: string;
  /** The image whose `kafka-topics.sh` creates the two topics before a producer starts. */
  readonly kafkaToolsImage: string;
  /**
   * Alarm thresholds: pending outbox rows per shard, records behind on the worst partition,
   * percent of the load balancer's answers that are 5xx, 5xx answers per service in 5 minutes.
   */
  readonly relayBacklogAlarm: number;
  readonly consumerLagAlarm: number;
  readonly http5xxPercentAlarm: number;
  readonly service5xxAlarm: number;
}

/** deploy/aws → the repository root. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

export function loadSettings(node: Node): Settings {
  const str = (key: string, fallback: string): string => {
    const v = node.tryGetContext(key);
    return v === undefined || v === null || v === '' ? fallback : String(v);
  };
  const opt = (key: string): string | undefined => {
    const v = node.tryGetContext(key);
    return v === undefined || v === null || v === '' ? undefined : String(v);
  };
  const num = (key: string, fallback: number, min: number): number => {
    const raw = node.tryGetContext(key);
    if (raw === undefined || raw === null || raw === '') return fallback;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min) {
      throw new Error(`context ${key}: expected an integer >= ${min}, got ${JSON.stringify(raw)}`);
    }
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const raw = node.tryGetContext(key);
    if (raw === undefined || raw === null || raw === '') return fallback;
    if (raw === true || raw === 'true') return true;
    if (raw === false || raw === 'false') return false;
    throw new Error(`context ${key}: expected true or false, got ${JSON.stringify(raw)}`);
  };

  const stage = str('stage', 'dev');
  if (!/^[a-z][a-z0-9-]{0,19}$/.test(stage)) {
    throw new Error(`context stage: 1-20 lower-case letters, digits or '-', starting with a letter; got ${stage}`);
  }
  const arch = str('cpuArchitecture', 'X86_64');
  if (arch !== 'X86_64' && arch !== 'ARM64') {
    throw new Error(`context cpuArchitecture: X86_64 or ARM64, got ${arch}`);
  }
  const shardsFile = str('shardsFile', path.join(REPO_ROOT, 'shards.toml'));
  const kafkaBrokers = num('kafkaBrokers', 2, 2);
  if (kafkaBrokers % 2 !== 0) {
    // One broker per AZ per round: MSK wants a multiple of the client subnets (two AZs here).
    throw new Error(`context kafkaBrokers: a multiple of 2 (the VPC's AZs), got ${kafkaBrokers}`);
  }
  return {
    stage,
    shardsFile: path.resolve(shardsFile),
    imageRepository: str('imageRepository', 'ticket-hub'),
    cpuArchitecture: arch,
    dbInstanceClass: str('dbInstanceClass', 't4g.micro'),
    dbStorageGb: num('dbStorageGb', 20, 20),
    dbMultiAz: bool('dbMultiAz', false),
    redisNodeType: str('redisNodeType', 'cache.t4g.micro'),
    kafkaInstanceType: str('kafkaInstanceType', 'kafka.t3.small'),
    kafkaBrokers,
    kafkaVolumeGb: num('kafkaVolumeGb', 10, 1),
    serviceTasks: num('serviceTasks', 1, 1),
    relayStandbys: num('relayStandbys', 0, 0),
    certificateArn: opt('certificateArn'),
    allowedCidr: str('allowedCidr', '0.0.0.0/0'),
    alarmEmail: opt('alarmEmail'),
    otelCollectorImage: str('otelCollectorImage', 'public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0'),
    kafkaToolsImage: str('kafkaToolsImage', 'apache/kafka:3.9.0'),
    relayBacklogAlarm: num('relayBacklogAlarm', 1000, 1),
    consumerLagAlarm: num('consumerLagAlarm', 1000, 1),
    http5xxPercentAlarm: num('http5xxPercentAlarm', 5, 1),
    service5xxAlarm: num('service5xxAlarm', 10, 1),
  };
}
