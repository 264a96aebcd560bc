// Ticket Hub on AWS: the whole deployment as one stack.
//
// # Layout
// - network: a VPC over two AZs; public subnets (load balancer, one NAT gateway), private
//   subnets with egress (the tasks), isolated subnets (RDS, ElastiCache, MSK).
// - data: `Databases` (databases.ts), ElastiCache Redis, MSK with the two topics.
// - settings: Secrets Manager for the signing key (jwt-key.ts) and database URLs, SSM
//   parameters for everything else; ECS resolves both into the tasks' environment at start.
// - services: one Fargate service per service (service.ts), the relay once per shard.
// - alarms (alarms.ts) on the metrics the collector sidecars bring in (metrics.ts).

import { CfnOutput, CfnParameter, Duration, Fn, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as msk from 'aws-cdk-lib/aws-msk';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { Alarms } from './alarms';
import { Databases } from './databases';
import { JwtSigningKey } from './jwt-key';
import { collectorConfig } from './metrics';
import { InitStep, TicketHubService } from './service';
import { Settings } from './settings';
import { Shard, shardId, shardUrlVariable } from './shards';

/** The services' HTTP ports, as on the local stack (README, "What runs where"). */
export const PORTS = { gateway: 4000, accounts: 3001, accountsGrpc: 50051, orders: 3002, relay: 3003, notifications: 3010, projector: 3020 } as const;
const POSTGRES = 5432;
const REDIS = 6379;
/** MSK's plaintext listener. */
const KAFKA = 9092;
/** The relay's topics (platform::events), with the relay's default partition count. */
export const TOPICS = ['orders.events', 'orders.events.dlq'] as const;
const TOPIC_PARTITIONS = 6;
/** Cloud Map namespace through which services find accounts, orders and the projector. */
const NAMESPACE = 'ticket-hub.internal';

export interface TicketHubStackProps extends StackProps {
  readonly settings: Settings;
  readonly shards: Shard[];
}

export class TicketHubStack extends Stack {
  constructor(scope: Construct, id: string, props: TicketHubStackProps) {
    super(scope, id, props);
    const { settings, shards } = props;
    const prefix = `/ticket-hub/${settings.stage}`;

    const imageTag = new CfnParameter(this, 'ImageTag', {
      type: 'String',
      default: 'latest',
      description: `Tag of the image built from compose/Dockerfile in the ECR repository ${settings.imageRepository}`,
    });

    // ------------------------------------------------------------------ network

    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      // One NAT gateway: the tasks reach ECR, Secrets Manager, SSM, CloudWatch and the two
      // public images through it; cheaper than five interface endpoints per AZ at this size.
      natGateways: 1,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'app', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
        { name: 'data', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
      ],
    });
    const appSubnets = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
    const dataSubnets = vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_ISOLATED });

    // Security groups: tasks may call out (AWS APIs through the NAT gateway); what may call
    // *in* is listed rule by rule below, and the data tier calls nowhere.
    const sg = (sid: string, description: string, allowAllOutbound: boolean) =>
      new ec2.SecurityGroup(this, sid, { vpc, description, allowAllOutbound });
    const albSg = sg('AlbSg', 'Ticket Hub load balancer', false);
    const gatewaySg = sg('GatewaySg', 'Ticket Hub gateway tasks', true);
    const accountsSg = sg('AccountsSg', 'Ticket Hub accounts tasks', true);
    const ordersSg = sg('OrdersSg', 'Ticket Hub orders tasks', true);
    const notificationsSg = sg('NotificationsSg', 'Ticket Hub notifications tasks', true);
    const projectorSg = sg('ProjectorSg', 'Ticket Hub projector tasks', true);
    const relaySgs = new Map(shards.map((s) => [s.name, sg(`Relay${shardId(s.name)}Sg`, `Ticket Hub orders-relay ${s.name} tasks`, true)]));
    const globalDbSg = sg('GlobalDbSg', 'Ticket Hub global Postgres', false);
    const shardDbSgs = new Map(shards.map((s) => [s.name, sg(`Shard${shardId(s.name)}DbSg`, `Ticket Hub shard ${s.name} Postgres`, false)]));
    const redisSg = sg('RedisSg', 'Ticket Hub Redis', false);
    const kafkaSg = sg('KafkaSg', 'Ticket Hub Kafka brokers', false);

    const allow = (to: ec2.SecurityGroup, from: ec2.SecurityGroup, port: number, why: string) =>
      to.addIngressRule(from, ec2.Port.tcp(port), why);
    allow(accountsSg, gatewaySg, PORTS.accounts, 'gateway: accounts HTTP API');
    allow(accountsSg, ordersSg, PORTS.accounts, 'orders: accounts JWKS');
    allow(accountsSg, ordersSg, PORTS.accountsGrpc, 'orders: accounts gRPC (customer check)');
    allow(accountsSg, projectorSg, PORTS.accounts, 'projector: accounts JWKS');
    allow(ordersSg, gatewaySg, PORTS.orders, 'gateway: orders HTTP API');
    allow(ordersSg, projectorSg, PORTS.orders, 'projector: orders HTTP API (who organizes an event)');
    allow(projectorSg, gatewaySg, PORTS.projector, 'gateway: projector read API');
    allow(globalDbSg, accountsSg, POSTGRES, 'accounts: accounts database');
    allow(globalDbSg, ordersSg, POSTGRES, 'orders: placement database');
    allow(globalDbSg, notificationsSg, POSTGRES, 'notifications: notifications database');
    allow(globalDbSg, projectorSg, POSTGRES, 'projector: read_models database');
    for (const s of shards) {
      allow(shardDbSgs.get(s.name)!, ordersSg, POSTGRES, `orders: shard ${s.name}`);
      allow(shardDbSgs.get(s.name)!, relaySgs.get(s.name)!, POSTGRES, `orders-relay ${s.name}: its outbox and lease`);
      allow(kafkaSg, relaySgs.get(s.name)!, KAFKA, `orders-relay ${s.name}: publishes orders.events`);
    }
    allow(kafkaSg, notificationsSg, KAFKA, 'notifications: consumes orders.events, writes the DLQ');
    allow(kafkaSg, projectorSg, KAFKA, 'projector: consumes orders.events, writes the DLQ');
    allow(redisSg, gatewaySg, REDIS, 'gateway: cache-aside');
    allow(redisSg, ordersSg, REDIS, 'orders: stock locks');
    allow(redisSg, accountsSg, REDIS, 'accounts: login throttle');

    // ------------------------------------------------------------------ data

    const databases = new Databases(this, 'Db', {
      vpc,
      settings,
      shards,
      globalSg: globalDbSg,
      shardSg: (s) => shardDbSgs.get(s.name)!,
    });

    const redisSubnets = new elasticache.CfnSubnetGroup(this, 'RedisSubnets', {
      description: 'Ticket Hub Redis',
      subnetIds: dataSubnets.subnetIds,
    });
    const redis = new elasticache.CfnReplicationGroup(this, 'Redis', {
      replicationGroupDescription: 'Ticket Hub: gateway cache, order stock locks, login throttle',
      engine: 'redis',
      engineVersion: '7.1',
      cacheNodeType: settings.redisNodeType,
      numCacheClusters: 1,
      automaticFailoverEnabled: false,
      cacheSubnetGroupName: redisSubnets.ref,
      securityGroupIds: [redisSg.securityGroupId],
      port: REDIS,
      atRestEncryptionEnabled: true,
      // The services' redis client is built without TLS (Cargo.toml: tokio-comp only), and an
      // AUTH token needs TLS on ElastiCache: access is by security group alone.
      transitEncryptionEnabled: false,
    });

    // MSK provisioned, not Serverless: Serverless accepts only IAM authentication over TLS,
    // and the services' librdkafka is built without SSL or SASL (rdkafka's default features)
    // and configures neither, so only a provisioned cluster's plaintext listener can serve
    // them, as the local broker does. Access is by security group.
    const replication = Math.min(3, settings.kafkaBrokers);
    const kafkaConfig = new msk.CfnConfiguration(this, 'KafkaConfig', {
      name: `ticket-hub-${settings.stage}`,
      description: 'Ticket Hub brokers',
      kafkaVersionsList: ['3.9.x'],
      serverProperties: [
        // Topics are made on purpose (see `topics` below), never by a producer's first send.
        'auto.create.topics.enable=false',
        `default.replication.factor=${replication}`,
        // An acknowledged record is on two brokers. While one restarts (MSK patches one at a
        // time) the relay cannot publish and keeps its rows PENDING: the outbox is the buffer.
        `min.insync.replicas=${Math.min(2, replication)}`,
        `num.partitions=${TOPIC_PARTITIONS}`,
        '',
      ].join('\n'),
    });
    const kafkaLogs = new logs.LogGroup(this, 'KafkaLogs', {
      logGroupName: `${prefix}/kafka`,
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const kafka = new msk.CfnCluster(this, 'Kafka', {
      clusterName: `ticket-hub-${settings.stage}`,
      kafkaVersion: '3.9.x',
      numberOfBrokerNodes: settings.kafkaBrokers,
      brokerNodeGroupInfo: {
        instanceType: settings.kafkaInstanceType,
        clientSubnets: dataSubnets.subnetIds,
        securityGroups: [kafkaSg.securityGroupId],
        storageInfo: { ebsStorageInfo: { volumeSize: settings.kafkaVolumeGb } },
      },
      clientAuthentication: { unauthenticated: { enabled: true } },
      encryptionInfo: { encryptionInTransit: { clientBroker: 'PLAINTEXT', inCluster: true } },
      configurationInfo: { arn: kafkaConfig.attrArn, revision: kafkaConfig.attrLatestRevisionRevision },
      loggingInfo: { brokerLogs: { cloudWatchLogs: { enabled: true, logGroup: kafkaLogs.logGroupName } } },
    });
    // CloudFormation exposes no broker addresses for MSK: one API call at deploy time does.
    const bootstrap = new cr.AwsCustomResource(this, 'KafkaBootstrap', {
      onUpdate: {
        service: 'Kafka',
        action: 'getBootstrapBrokers',
        parameters: { ClusterArn: kafka.attrArn },
        physicalResourceId: cr.PhysicalResourceId.of(kafka.attrArn),
        outputPaths: ['BootstrapBrokerString'],
      },
      policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: [kafka.attrArn] }),
      installLatestAwsSdk: false,
      logGroup: new logs.LogGroup(this, 'KafkaBootstrapLogs', { retention: logs.RetentionDays.ONE_MONTH }),
    });

    // ------------------------------------------------------------------ settings

    const jwt = new JwtSigningKey(this, 'JwtKey', { secretName: `ticket-hub/${settings.stage}/accounts/jwt-signing-key` });
    const param = (pid: string, name: string, value: string, description: string) =>
      new ssm.StringParameter(this, pid, { parameterName: `${prefix}/${name}`, stringValue: value, description });
    const accountsHost = `accounts.${NAMESPACE}`;
    const p = {
      rustLog: param('RustLogParam', 'rust-log', 'info', 'RUST_LOG of every service'),
      redisUrl: param(
        'RedisUrlParam',
        'redis-url',
        Fn.join('', ['redis://', redis.attrPrimaryEndPointAddress, ':', redis.attrPrimaryEndPointPort]),
        'Redis of the gateway, orders and accounts',
      ),
      kafkaBootstrap: param(
        'KafkaBootstrapParam',
        'kafka-bootstrap',
        bootstrap.getResponseField('BootstrapBrokerString'),
        'MSK plaintext bootstrap brokers',
      ),
      accountsUrl: param('AccountsUrlParam', 'accounts-url', `http://${accountsHost}:${PORTS.accounts}`, 'accounts HTTP API'),
      accountsJwks: param(
        'AccountsJwksParam',
        'accounts-jwks-url',
        `http://${accountsHost}:${PORTS.accounts}/.well-known/jwks.json`,
        'Where orders and the projector fetch the token verification keys',
      ),
      accountsGrpc: param('AccountsGrpcParam', 'accounts-grpc-url', `http://${accountsHost}:${PORTS.accountsGrpc}`, 'accounts gRPC'),
      ordersUrl: param('OrdersUrlParam', 'orders-url', `http://orders.${NAMESPACE}:${PORTS.orders}`, 'orders HTTP API'),
      projectorUrl: param('ProjectorUrlParam', 'projector-url', `http://projector.${NAMESPACE}:${PORTS.projector}`, 'projector read API'),
      tokenIssuer: param('TokenIssuerParam', 'token-issuer', 'ticket-hub-accounts', 'iss of access tokens (accounts signs, orders and the projector check)'),
      tokenAudience: param('TokenAudienceParam', 'token-audience', 'ticket-hub', 'aud of access tokens (accounts signs, orders and the projector check)'),
    };
    const fromParam = (x: ssm.IStringParameter) => ecs.Secret.fromSsmParameter(x);
    const globalUrl = (key: 'server' | 'accounts' | 'notifications' | 'placement' | 'read_models') =>
      ecs.Secret.fromSecretsManager(databases.globalUrls, key);
    const shardUrls = (only?: Shard) =>
      Object.fromEntries(
        databases.shards
          .filter((d) => only === undefined || d.shard.name === only.name)
          .map((d) => [shardUrlVariable(d.shard.name), ecs.Secret.fromSecretsManager(d.urls, 'url')]),
      );

    // ------------------------------------------------------------------ services

    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc,
      clusterName: `ticket-hub-${settings.stage}`,
      defaultCloudMapNamespace: { name: NAMESPACE, vpc, useForServiceConnect: false },
    });
    const image = ecs.ContainerImage.fromEcrRepository(
      ecr.Repository.fromRepositoryName(this, 'ImageRepo', settings.imageRepository),
      imageTag.valueAsString,
    );
    const collectorImage = ecs.ContainerImage.fromRegistry(settings.otelCollectorImage);
    const kafkaTools = ecs.ContainerImage.fromRegistry(settings.kafkaToolsImage);
    const arch = settings.cpuArchitecture === 'ARM64' ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64;
    const metricsLogs = new logs.LogGroup(this, 'MetricsLogs', {
      logGroupName: `${prefix}/metrics`,
      retention: logs.RetentionDays.ONE_WEEK,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const collector = (service: string, port: number) =>
      param(`Otel${shardId(service)}Param`, `otel/${service}`, collectorConfig({ service, port, logGroupName: metricsLogs.logGroupName }), `ADOT collector configuration of ${service} tasks`);

    // Steps before a service starts. Migrations are idempotent and safe to race (stackctl,
    // as `./dev up` runs them on every start): each service migrates what it owns.
    const migrate = (what: string, secrets: Record<string, ecs.Secret>): InitStep => ({
      name: 'migrate',
      image,
      command: ['sh', '-c', what],
      secrets: { TICKET_HUB_GLOBAL_PG: globalUrl('server'), ...secrets },
    });
    // The topics, with the cluster's replication, before any producer or consumer starts
    // (the services would create missing topics themselves, with replication 1).
    const topics: InitStep = {
      name: 'kafka-topics',
      image: kafkaTools,
      entryPoint: ['/bin/sh', '-c'],
      command: [
        [
          'set -e',
          ...TOPICS.map(
            (t) =>
              `/opt/kafka/bin/kafka-topics.sh --bootstrap-server "$KAFKA_BOOTSTRAP" --create --if-not-exists --topic ${t} --partitions ${TOPIC_PARTITIONS} --replication-factor ${replication}`,
          ),
        ].join('\n'),
      ],
      environment: { KAFKA_HEAP_OPTS: '-Xmx128m' },
      secrets: { KAFKA_BOOTSTRAP: fromParam(p.kafkaBootstrap) },
    };

    const common = {
      cluster,
      image,
      cpuArchitecture: arch,
      subnets: appSubnets,
      collectorImage,
      metricsLogGroup: metricsLogs,
    };
    const env = (prefixVar: string, port: number) => ({ [`${prefixVar}HTTP_ADDR`]: `0.0.0.0:${port}` });
    const rolling = { minHealthyPercent: 100, maxHealthyPercent: 200 };

    const accounts = new TicketHubService(this, 'Accounts', {
      ...common,
      ...rolling,
      service: 'accounts',
      command: ['accounts'],
      port: PORTS.accounts,
      extraPorts: [PORTS.accountsGrpc],
      // argon2id at 12 MiB a hash (the default), one hashing thread per core.
      cpu: 512,
      memoryMiB: 1024,
      environment: {
        ...env('TICKET_HUB_ACCOUNTS__', PORTS.accounts),
        TICKET_HUB_ACCOUNTS__GRPC_ADDR: `0.0.0.0:${PORTS.accountsGrpc}`,
      },
      secrets: {
        RUST_LOG: fromParam(p.rustLog),
        TICKET_HUB_ACCOUNTS__DATABASE_URL: globalUrl('accounts'),
        TICKET_HUB_ACCOUNTS__REDIS_URL: fromParam(p.redisUrl),
        TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_PEM: ecs.Secret.fromSecretsManager(jwt.secret),
        TICKET_HUB_ACCOUNTS__JWT__ISSUER: fromParam(p.tokenIssuer),
        TICKET_HUB_ACCOUNTS__JWT__AUDIENCE: fromParam(p.tokenAudience),
      },
      initSteps: [migrate('stackctl migrate accounts', {})],
      securityGroup: accountsSg,
      desiredCount: settings.serviceTasks,
      discoveryName: 'accounts',
      stopTimeoutSecs: 30,
      collectorConfig: collector('accounts', PORTS.accounts),
      logGroupName: `${prefix}/accounts`,
    });
    accounts.node.addDependency(jwt.ready);

    new TicketHubService(this, 'Orders', {
      ...common,
      ...rolling,
      service: 'orders',
      command: ['orders'],
      port: PORTS.orders,
      cpu: 256,
      memoryMiB: 512,
      environment: env('TICKET_HUB_ORDERS__', PORTS.orders),
      secrets: {
        RUST_LOG: fromParam(p.rustLog),
        TICKET_HUB_ORDERS__PLACEMENT_URL: globalUrl('placement'),
        TICKET_HUB_ORDERS__REDIS_URL: fromParam(p.redisUrl),
        TICKET_HUB_ORDERS__ACCOUNTS_JWKS_URL: fromParam(p.accountsJwks),
        TICKET_HUB_ORDERS__ACCOUNTS_GRPC_URL: fromParam(p.accountsGrpc),
        TICKET_HUB_ORDERS__TOKEN_ISSUER: fromParam(p.tokenIssuer),
        TICKET_HUB_ORDERS__TOKEN_AUDIENCE: fromParam(p.tokenAudience),
        ...shardUrls(),
      },
      initSteps: [migrate('stackctl migrate placement && stackctl migrate shards', shardUrls())],
      securityGroup: ordersSg,
      desiredCount: settings.serviceTasks,
      discoveryName: 'orders',
      stopTimeoutSecs: 30,
      collectorConfig: collector('orders', PORTS.orders),
      logGroupName: `${prefix}/orders`,
    });

    // The relay: one ECS service per shard, each running `orders-relay run --shard NAME`.
    // The rule that one process publishes a shard while others stand by is the relay's own
    // (a session advisory lock in the shard's database, services/orders/src/relay/worker.rs),
    // so ECS only has to keep at least one relay per shard alive: one task (plus
    // `relayStandbys`), and on every deployment the new task starts beside the old one
    // (minimum 100 %, maximum 200 %) and stands by until the old one, stopped with SIGTERM,
    // finishes its batch and releases the lease. No moment without a relay, never two
    // publishers.
    const relayConfig = collector('orders-relay', PORTS.relay);
    for (const shard of shards) {
      new TicketHubService(this, `Relay${shardId(shard.name)}`, {
        ...common,
        ...rolling,
        service: 'orders-relay',
        instanceName: `orders-relay-${shard.name}`,
        command: ['orders-relay', 'run', '--shard', shard.name],
        port: PORTS.relay,
        cpu: 256,
        memoryMiB: 512,
        environment: env('TICKET_HUB_ORDERS_RELAY__', PORTS.relay),
        secrets: {
          RUST_LOG: fromParam(p.rustLog),
          TICKET_HUB_ORDERS_RELAY__KAFKA_BOOTSTRAP: fromParam(p.kafkaBootstrap),
          ...shardUrls(shard),
        },
        initSteps: [topics],
        securityGroup: relaySgs.get(shard.name)!,
        desiredCount: 1 + settings.relayStandbys,
        // The relay finishes its batch, flushes and releases the lease within 20 s.
        stopTimeoutSecs: 30,
        collectorConfig: relayConfig,
        logGroupName: `${prefix}/orders-relay-${shard.name}`,
      });
    }

    // notifications: one active consumer elected by its own lease (platform::consumer);
    // extra tasks would be standbys, so one task, with the same start-beside-then-stop
    // deployment as the relay.
    new TicketHubService(this, 'Notifications', {
      ...common,
      ...rolling,
      service: 'notifications',
      command: ['notifications'],
      port: PORTS.notifications,
      cpu: 256,
      memoryMiB: 512,
      environment: env('TICKET_HUB_NOTIFICATIONS__', PORTS.notifications),
      secrets: {
        RUST_LOG: fromParam(p.rustLog),
        TICKET_HUB_NOTIFICATIONS__DATABASE_URL: globalUrl('notifications'),
        TICKET_HUB_NOTIFICATIONS__CONSUMER__KAFKA_BOOTSTRAP: fromParam(p.kafkaBootstrap),
      },
      initSteps: [migrate('stackctl migrate notifications', {}), topics],
      securityGroup: notificationsSg,
      desiredCount: 1,
      stopTimeoutSecs: 30,
      collectorConfig: collector('notifications', PORTS.notifications),
      logGroupName: `${prefix}/notifications`,
    });

    // projector: the read models (docs/projector.md), a consumer of orders.events on the same
    // runtime and lease as notifications, so one task deployed the same way; the gateway
    // reaches its read API through Cloud Map. `projector rebuild|switch|status` run as a
    // one-off task of this task definition with the command overridden; a rebuild itself runs
    // in the service (a second generation's consumer beside the LIVE one).
    new TicketHubService(this, 'Projector', {
      ...common,
      ...rolling,
      service: 'projector',
      command: ['projector'],
      port: PORTS.projector,
      cpu: 256,
      memoryMiB: 512,
      environment: env('TICKET_HUB_PROJECTOR__', PORTS.projector),
      secrets: {
        RUST_LOG: fromParam(p.rustLog),
        TICKET_HUB_PROJECTOR__DATABASE_URL: globalUrl('read_models'),
        TICKET_HUB_PROJECTOR__CONSUMER__KAFKA_BOOTSTRAP: fromParam(p.kafkaBootstrap),
        TICKET_HUB_PROJECTOR__ORDERS_URL: fromParam(p.ordersUrl),
        TICKET_HUB_PROJECTOR__ACCOUNTS_JWKS_URL: fromParam(p.accountsJwks),
        TICKET_HUB_PROJECTOR__TOKEN_ISSUER: fromParam(p.tokenIssuer),
        TICKET_HUB_PROJECTOR__TOKEN_AUDIENCE: fromParam(p.tokenAudience),
      },
      initSteps: [migrate('stackctl migrate read-models', {}), topics],
      securityGroup: projectorSg,
      desiredCount: 1,
      discoveryName: 'projector',
      stopTimeoutSecs: 30,
      collectorConfig: collector('projector', PORTS.projector),
      logGroupName: `${prefix}/projector`,
    });

    const gateway = new TicketHubService(this, 'Gateway', {
      ...common,
      ...rolling,
      service: 'gateway',
      command: ['gateway'],
      port: PORTS.gateway,
      cpu: 256,
      memoryMiB: 512,
      environment: env('TICKET_HUB_GATEWAY__', PORTS.gateway),
      secrets: {
        RUST_LOG: fromParam(p.rustLog),
        TICKET_HUB_GATEWAY__REDIS_URL: fromParam(p.redisUrl),
        TICKET_HUB_GATEWAY__ACCOUNTS_URL: fromParam(p.accountsUrl),
        TICKET_HUB_GATEWAY__ORDERS_URL: fromParam(p.ordersUrl),
        TICKET_HUB_GATEWAY__PROJECTOR_URL: fromParam(p.projectorUrl),
      },
      securityGroup: gatewaySg,
      desiredCount: settings.serviceTasks,
      stopTimeoutSecs: 30,
      collectorConfig: collector('gateway', PORTS.gateway),
      logGroupName: `${prefix}/gateway`,
    });

    // The load balancer: the only way in. Readiness (/readyz) decides which gateway tasks
    // get traffic.
    const alb = new elbv2.ApplicationLoadBalancer(this, 'Alb', {
      vpc,
      internetFacing: true,
      securityGroup: albSg,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      dropInvalidHeaderFields: true,
    });
    const https = settings.certificateArn !== undefined;
    albSg.addIngressRule(ec2.Peer.ipv4(settings.allowedCidr), ec2.Port.tcp(https ? 443 : 80), 'clients');
    const listener = https
      ? alb.addListener('Https', {
          port: 443,
          protocol: elbv2.ApplicationProtocol.HTTPS,
          certificates: [elbv2.ListenerCertificate.fromArn(settings.certificateArn!)],
          sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
          open: false,
        })
      : alb.addListener('Http', { port: 80, open: false });
    const targets = listener.addTargets('Gateway', {
      port: PORTS.gateway,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [gateway.service],
      deregistrationDelay: Duration.seconds(30),
      healthCheck: {
        path: '/readyz',
        healthyHttpCodes: '200',
        interval: Duration.seconds(15),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 3,
      },
    });

    // ------------------------------------------------------------------ alarms and outputs

    const alarms = new Alarms(this, 'Alarms', { settings, shards, alb, targets });

    new CfnOutput(this, 'GraphqlUrl', {
      value: `${https ? 'https' : 'http'}://${alb.loadBalancerDnsName}/graphql`,
      description: 'The gateway, through the load balancer',
    });
    new CfnOutput(this, 'JwtSigningKeySecret', { value: jwt.secret.secretName, description: 'Replace to rotate the token signing key' });
    new CfnOutput(this, 'ClusterName', { value: cluster.clusterName });
    new CfnOutput(this, 'AlarmTopic', { value: alarms.topic.topicArn });
  }
}
