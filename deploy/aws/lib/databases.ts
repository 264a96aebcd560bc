// The Postgres servers: one RDS instance for the global databases (accounts, notifications,
// placement, read_models) and one per shard of shards.toml, each with its credentials and its
// connection URLs in Secrets Manager.
//
// The services take whole connection URLs (`TICKET_HUB_ACCOUNTS__DATABASE_URL`,
// `TICKET_HUB_SHARD_<NAME>_URL`, …), so each instance gets a second secret holding its URLs,
// composed by CloudFormation from the instance's endpoint and a dynamic reference to the
// generated password: the password is never in the template, and ECS injects each URL into
// the tasks as a secret. Passwords are letters and digits only, so they need no escaping in a
// URL nor in the JSON of that secret. Rotation is not set up: a rotated password would leave
// the URL secrets stale (redeploy the stack after rotating).

import { Duration, SecretValue, Tags, Fn } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { Settings } from './settings';
import { Shard, shardId } from './shards';

/** The master user of every instance; the services connect as it (see docs/aws.md). */
const USER = 'tickethub';
/** The database of every shard (`migrations/shard/`), as in shards.toml. */
const SHARD_DATABASE = 'ticket_hub';
/** Every printable ASCII character that is not a letter or a digit. */
const PUNCTUATION = ' !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';

export interface ShardDatabase {
  readonly shard: Shard;
  readonly instance: rds.DatabaseInstance;
  /** JSON `{url}`: the shard's connection URL. */
  readonly urls: secretsmanager.Secret;
}

export class Databases extends Construct {
  readonly global: rds.DatabaseInstance;
  /** JSON `{server, accounts, notifications, placement, read_models}`: the server URL (for `stackctl`) and one URL per database. */
  readonly globalUrls: secretsmanager.Secret;
  readonly shards: ShardDatabase[];

  constructor(
    scope: Construct,
    id: string,
    props: { vpc: ec2.IVpc; settings: Settings; shards: Shard[]; globalSg: ec2.ISecurityGroup; shardSg: (s: Shard) => ec2.ISecurityGroup },
  ) {
    super(scope, id);
    const { settings } = props;
    // PostgreSQL 16, as compose runs. A minor version, not `16` alone: cfn-lint (W3691) and
    // RDS treat a bare major as deprecated for new instances. Minor upgrades are automatic;
    // bump this when RDS retires it for new instances.
    const engine = rds.DatabaseInstanceEngine.postgres({ version: rds.PostgresEngineVersion.VER_16_13 });
    // The services' sqlx is built without TLS (Cargo.toml: no tls feature), so connections are
    // plaintext inside the VPC's isolated subnets; PostgreSQL 15+ on RDS forces TLS by default.
    const common = { 'rds.force_ssl': '0' };
    const globalParams = new rds.ParameterGroup(this, 'GlobalParams', {
      engine,
      description: 'Ticket Hub global instance',
      parameters: common,
    });
    // Partition moves copy by logical replication (orders-rebalance), as ./dev sets wal_level.
    const shardParams = new rds.ParameterGroup(this, 'ShardParams', {
      engine,
      description: 'Ticket Hub shard instances',
      parameters: { ...common, 'rds.logical_replication': '1' },
    });

    const instance = (iid: string, name: string, sg: ec2.ISecurityGroup, params: rds.IParameterGroup, databaseName?: string) => {
      const db = new rds.DatabaseInstance(this, iid, {
        engine,
        instanceType: new ec2.InstanceType(settings.dbInstanceClass),
        vpc: props.vpc,
        vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
        securityGroups: [sg],
        credentials: rds.Credentials.fromGeneratedSecret(USER, {
          secretName: `ticket-hub/${settings.stage}/db/${name}/master`,
          excludeCharacters: PUNCTUATION,
        }),
        databaseName,
        parameterGroup: params,
        allocatedStorage: settings.dbStorageGb,
        maxAllocatedStorage: settings.dbStorageGb * 5,
        storageType: rds.StorageType.GP3,
        storageEncrypted: true,
        multiAz: settings.dbMultiAz,
        backupRetention: Duration.days(7),
        autoMinorVersionUpgrade: true,
        cloudwatchLogsExports: ['postgresql'],
        publiclyAccessible: false,
      });
      Tags.of(db).add('ticket-hub:database', name);
      return db;
    };
    // `postgres://tickethub:{{resolve:secretsmanager:<master secret>:SecretString:password}}@host:port[/db]`.
    // CDK's `unsafe` names are about values it cannot vouch for: this one holds only the
    // dynamic reference (resolved by CloudFormation inside Secrets Manager) and the endpoint,
    // and the tests check that no password reaches the template.
    const url = (db: rds.DatabaseInstance, database?: string): SecretValue => {
      const password = db.secret!.secretValueFromJson('password').unsafeUnwrap();
      const parts = [`postgres://${USER}:`, password, '@', db.dbInstanceEndpointAddress, ':', db.dbInstanceEndpointPort];
      return SecretValue.unsafePlainText(Fn.join('', database === undefined ? parts : [...parts, `/${database}`]));
    };

    this.global = instance('Global', 'global', props.globalSg, globalParams);
    this.globalUrls = new secretsmanager.Secret(this, 'GlobalUrls', {
      secretName: `ticket-hub/${settings.stage}/db/global/urls`,
      description: 'Ticket Hub global Postgres: server URL (stackctl) and the accounts, notifications, placement and read_models databases',
      secretObjectValue: {
        server: url(this.global),
        accounts: url(this.global, 'accounts'),
        notifications: url(this.global, 'notifications'),
        placement: url(this.global, 'placement'),
        read_models: url(this.global, 'read_models'),
      },
    });

    this.shards = props.shards.map((shard) => {
      const db = instance(`Shard${shardId(shard.name)}`, shard.name, props.shardSg(shard), shardParams, SHARD_DATABASE);
      Tags.of(db).add('ticket-hub:shard', shard.name);
      Tags.of(db).add('ticket-hub:region', shard.region);
      const urls = new secretsmanager.Secret(this, `Shard${shardId(shard.name)}Url`, {
        secretName: `ticket-hub/${settings.stage}/db/${shard.name}/url`,
        description: `Ticket Hub shard ${shard.name} (region ${shard.region}): connection URL`,
        secretObjectValue: { url: url(db, SHARD_DATABASE) },
      });
      return { shard, instance: db, urls };
    });
  }
}
