// What the template must hold, checked on the synthesized CloudFormation (aws-cdk-lib/assertions),
// for the repository's shards.toml and for one with a shard more. Run by `./dev aws test`
// (node's test runner through tsx), before cfn-lint lints the same template.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { parse, stringify } from 'smol-toml';
import { buildApp } from '../lib/app';
import { collectorConfig, METRICS, NAMESPACE } from '../lib/metrics';
import { REPO_ROOT } from '../lib/settings';
import { loadShards, shardUrlVariable } from '../lib/shards';
import { PORTS, TOPICS } from '../lib/stack';

// CDK's own template validation (a second linter) costs ~10 s a synth; cfn-lint runs on the
// synthesized template right after these tests.
process.env.CDK_VALIDATION = 'false';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any
type Resources = Record<string, Json>;

const REPO_SHARDS = path.join(REPO_ROOT, 'shards.toml');

function synth(context: Record<string, string> = {}): { template: Template; resources: Resources } {
  const app = new App({ context });
  const template = Template.fromStack(buildApp(app));
  return { template, resources: template.toJSON().Resources as Resources };
}

function ofType(resources: Resources, type: string): [string, Json][] {
  return Object.entries(resources).filter(([, r]) => r.Type === type);
}

/** The repository's shards.toml with one more shard, `na-2`, serving NA. */
function shardsWithNa2(): string {
  const doc = parse(readFileSync(REPO_SHARDS, 'utf8')) as Json;
  doc.regions.NA.shards.push('na-2');
  doc.shards['na-2'] = { url: 'postgres://postgres@127.0.0.1:5443/ticket_hub', max_connections: 16 };
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'ticket-hub-cdk-')), 'shards.toml');
  writeFileSync(file, stringify(doc));
  return file;
}

const tagOf = (r: Json, key: string): string | undefined =>
  (r.Properties.Tags ?? []).find((t: Json) => t.Key === key)?.Value;

/** ECS services by name, each with its task definition's containers. */
function services(resources: Resources): Map<string, { service: Json; containers: Json[] }> {
  const out = new Map<string, { service: Json; containers: Json[] }>();
  for (const [, s] of ofType(resources, 'AWS::ECS::Service')) {
    const task = resources[s.Properties.TaskDefinition.Ref];
    out.set(s.Properties.ServiceName, { service: s, containers: task.Properties.ContainerDefinitions });
  }
  return out;
}

/** The container running the service's binary (named after the service). */
function appContainer(containers: Json[], name: string): Json {
  const service = name.startsWith('orders-relay') ? 'orders-relay' : name;
  const c = containers.find((x) => x.Name === service);
  assert.ok(c, `no ${service} container in ${name}'s task`);
  return c;
}

/** The value of the SSM parameter behind a container secret (`ValueFrom` is the parameter's ARN). */
function ssmValue(resources: Resources, secret: Json): Json {
  const ref = (secret.ValueFrom['Fn::Join']?.[1] ?? []).find((x: Json) => resources[x?.Ref]?.Type === 'AWS::SSM::Parameter');
  assert.ok(ref, `${secret.Name} comes from an SSM parameter of the stack`);
  return resources[ref.Ref].Properties.Value;
}

/** Every ingress rule as `target SG description ← source (SG description or CIDR):port`. */
function ingress(resources: Resources): Map<string, string[]> {
  const desc = (id: string) => resources[id].Properties.GroupDescription as string;
  const rules = new Map<string, string[]>();
  for (const [id] of ofType(resources, 'AWS::EC2::SecurityGroup')) rules.set(desc(id), []);
  const add = (target: string, rule: Json) => {
    const source = rule.SourceSecurityGroupId ? desc(rule.SourceSecurityGroupId['Fn::GetAtt'][0]) : rule.CidrIp;
    assert.equal(rule.FromPort, rule.ToPort, `a port range on ${target}`);
    rules.get(target)!.push(`${source}:${rule.FromPort}`);
  };
  for (const [id, sg] of ofType(resources, 'AWS::EC2::SecurityGroup')) {
    for (const rule of sg.Properties.SecurityGroupIngress ?? []) add(desc(id), rule);
  }
  for (const [, rule] of ofType(resources, 'AWS::EC2::SecurityGroupIngress')) {
    add(desc(rule.Properties.GroupId['Fn::GetAtt'][0]), rule.Properties);
  }
  for (const list of rules.values()) list.sort();
  return rules;
}

const repo = synth();
const shards = loadShards(REPO_SHARDS);

describe('shards.toml drives the databases and the relays', () => {
  test('one RDS instance per shard of shards.toml, plus one for the global databases', () => {
    const dbs = ofType(repo.resources, 'AWS::RDS::DBInstance');
    assert.equal(dbs.length, shards.length + 1);
    assert.deepEqual(
      dbs.map(([, r]) => tagOf(r, 'ticket-hub:shard')).filter((s) => s !== undefined).sort(),
      shards.map((s) => s.name).sort(),
    );
    assert.equal(dbs.filter(([, r]) => tagOf(r, 'ticket-hub:database') === 'global').length, 1);
    for (const [, r] of dbs) {
      assert.equal(r.Properties.Engine, 'postgres');
      assert.equal(r.Properties.PubliclyAccessible, false);
      assert.equal(r.Properties.StorageEncrypted, true);
    }
  });

  test('a shard added to shards.toml adds its instance, its URL secret and its relay', () => {
    const { resources } = synth({ shardsFile: shardsWithNa2() });
    const dbs = ofType(resources, 'AWS::RDS::DBInstance');
    assert.equal(dbs.length, shards.length + 2);
    const na2 = dbs.filter(([, r]) => tagOf(r, 'ticket-hub:shard') === 'na-2');
    assert.equal(na2.length, 1);
    assert.equal(tagOf(na2[0][1], 'ticket-hub:region'), 'NA');
    const names = ofType(resources, 'AWS::SecretsManager::Secret').map(([, s]) => s.Properties.Name);
    assert.ok(names.includes('ticket-hub/dev/db/na-2/url'), names.join(', '));
    const svc = services(resources);
    assert.ok(svc.has('orders-relay-na-2'));
    const ordersSecrets = appContainer(svc.get('orders')!.containers, 'orders').Secrets.map((s: Json) => s.Name);
    assert.ok(ordersSecrets.includes(shardUrlVariable('na-2')), 'orders gets the new shard URL');
    assert.deepEqual(ingress(resources).get('Ticket Hub shard na-2 Postgres'), [
      `Ticket Hub orders tasks:${5432}`,
      `Ticket Hub orders-relay na-2 tasks:${5432}`,
    ]);
  });

  test('a shard no region lists is refused at synth time', () => {
    const doc = parse(readFileSync(REPO_SHARDS, 'utf8')) as Json;
    doc.shards['xx-9'] = { url: 'postgres://postgres@127.0.0.1:5449/ticket_hub', max_connections: 4 };
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'ticket-hub-cdk-')), 'shards.toml');
    writeFileSync(file, stringify(doc));
    assert.throws(() => loadShards(file), /shards\.xx-9: no region lists this shard/);
  });
});

describe('secrets are referenced, never inlined', () => {
  const text = JSON.stringify(repo.template.toJSON());

  test('no key, password or credentialed URL appears in the template', () => {
    assert.doesNotMatch(text, /PRIVATE KEY/);
    // Every credentialed URL carries a dynamic reference where its password goes.
    const urls = [...text.matchAll(/postgres:\/\/[^:"]+:(.{0,30})/g)];
    assert.ok(urls.length >= shards.length + 4, 'the URL secrets are in the template');
    for (const [, rest] of urls) assert.ok(rest.startsWith('{{resolve:secretsmanager:'), rest);
    for (const [, db] of ofType(repo.resources, 'AWS::RDS::DBInstance')) {
      assert.match(JSON.stringify(db.Properties.MasterUserPassword), /\{\{resolve:secretsmanager:/);
    }
  });

  test('secrets the stack creates hold generated or referenced values only', () => {
    for (const [id, s] of ofType(repo.resources, 'AWS::SecretsManager::Secret')) {
      const p = s.Properties;
      if (p.GenerateSecretString !== undefined) continue;
      const literal = (p.SecretString['Fn::Join']?.[1] ?? [p.SecretString]).filter((x: Json) => typeof x === 'string').join('');
      assert.doesNotMatch(literal.replace(/\{\{resolve:secretsmanager:[^}]*\}\}/g, ''), /:[A-Za-z0-9]{16,}@/, id);
      assert.match(literal, /\{\{resolve:secretsmanager:/, `${id} is composed from a reference`);
    }
  });

  test('task definitions take credentials from Secrets Manager and settings from SSM, never plain env', () => {
    const secretIds = new Set(ofType(repo.resources, 'AWS::SecretsManager::Secret').map(([id]) => id));
    for (const [name, { containers }] of services(repo.resources)) {
      for (const c of containers) {
        for (const e of c.Environment ?? []) {
          assert.match(e.Name, /(__HTTP_ADDR|__GRPC_ADDR|^KAFKA_HEAP_OPTS)$/, `${name}/${c.Name}: ${e.Name} is plain env`);
          assert.doesNotMatch(String(e.Value), /:\/\//, `${name}/${c.Name}: ${e.Name} holds a URL`);
        }
        for (const s of c.Secrets ?? []) {
          const from = JSON.stringify(s.ValueFrom);
          const fromSecret = [...secretIds].some((id) => from.includes(`"Ref":"${id}"`));
          const credential = /DATABASE_URL|PLACEMENT_URL|TICKET_HUB_SHARD_|GLOBAL_PG|PRIVATE_KEY/.test(s.Name);
          if (credential) assert.ok(fromSecret, `${name}/${c.Name}: ${s.Name} from Secrets Manager`);
          else assert.match(from, /:ssm:/, `${name}/${c.Name}: ${s.Name} from an SSM parameter`);
        }
      }
    }
    const accounts = appContainer(services(repo.resources).get('accounts')!.containers, 'accounts');
    const key = accounts.Secrets.find((s: Json) => s.Name === 'TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_PEM');
    assert.ok(key, 'accounts gets its signing key as a secret');
    const keySecret = repo.resources[key.ValueFrom.Ref];
    assert.equal(keySecret.Properties.Name, 'ticket-hub/dev/accounts/jwt-signing-key');
    assert.ok(keySecret.Properties.GenerateSecretString, 'only a placeholder in the template');
    const writers = ofType(repo.resources, 'AWS::CloudFormation::CustomResource').filter(
      ([, r]) => r.Properties.SecretArn?.Ref === key.ValueFrom.Ref,
    );
    assert.equal(writers.length, 1, 'a custom resource writes the real key');
  });
});

describe('services', () => {
  const svc = services(repo.resources);
  const expected = ['accounts', 'gateway', 'notifications', 'orders', 'projector', ...shards.map((s) => `orders-relay-${s.name}`)];

  test('one Fargate service per service, the relay once per shard; the gateway finds accounts, orders and the projector by Cloud Map', () => {
    assert.deepEqual([...svc.keys()].sort(), expected.sort());
    for (const { service } of svc.values()) assert.equal(service.Properties.LaunchType, 'FARGATE');
    // Each URL the gateway is given names a Cloud Map service that the called ECS service registers.
    const discovered = (name: string): string => {
      const registries = svc.get(name)!.service.Properties.ServiceRegistries ?? [];
      assert.equal(registries.length, 1, `${name} registers in Cloud Map`);
      return repo.resources[registries[0].RegistryArn['Fn::GetAtt'][0]].Properties.Name;
    };
    const gateway = appContainer(svc.get('gateway')!.containers, 'gateway');
    const url = (variable: string) => {
      const s = gateway.Secrets.find((x: Json) => x.Name === variable);
      assert.ok(s, `the gateway gets ${variable}`);
      return ssmValue(repo.resources, s);
    };
    for (const [variable, name, port] of [
      ['TICKET_HUB_GATEWAY__ACCOUNTS_URL', 'accounts', PORTS.accounts],
      ['TICKET_HUB_GATEWAY__ORDERS_URL', 'orders', PORTS.orders],
      ['TICKET_HUB_GATEWAY__PROJECTOR_URL', 'projector', PORTS.projector],
    ] as const) {
      assert.equal(url(variable), `http://${discovered(name)}.ticket-hub.internal:${port}`, variable);
    }
  });

  test('the projector: one task (its consumers elect an active process by lease), its database, the broker, orders and the JWKS', () => {
    const { service, containers } = svc.get('projector')!;
    assert.equal(service.Properties.DesiredCount, 1);
    assert.deepEqual(service.Properties.DeploymentConfiguration.MinimumHealthyPercent, 100);
    assert.deepEqual(service.Properties.DeploymentConfiguration.MaximumPercent, 200);
    const c = appContainer(containers, 'projector');
    assert.deepEqual(c.Command, ['projector']);
    assert.deepEqual(c.Environment, [{ Name: 'TICKET_HUB_PROJECTOR__HTTP_ADDR', Value: `0.0.0.0:${PORTS.projector}` }]);
    const secrets = new Map<string, Json>(c.Secrets.map((s: Json) => [s.Name, s]));
    assert.deepEqual(
      [...secrets.keys()].sort(),
      [
        'RUST_LOG',
        'TICKET_HUB_PROJECTOR__ACCOUNTS_JWKS_URL',
        'TICKET_HUB_PROJECTOR__CONSUMER__KAFKA_BOOTSTRAP',
        'TICKET_HUB_PROJECTOR__DATABASE_URL',
        'TICKET_HUB_PROJECTOR__ORDERS_URL',
        'TICKET_HUB_PROJECTOR__TOKEN_AUDIENCE',
        'TICKET_HUB_PROJECTOR__TOKEN_ISSUER',
      ],
    );
    // The read_models key of the global instance's URL secret, which names that database.
    const db = secrets.get('TICKET_HUB_PROJECTOR__DATABASE_URL').ValueFrom['Fn::Join'][1];
    assert.ok(db.some((x: Json) => typeof x === 'string' && x.includes(':read_models::')), JSON.stringify(db));
    const globalUrls = ofType(repo.resources, 'AWS::SecretsManager::Secret').find(([id]) => db.some((x: Json) => x?.Ref === id));
    assert.ok(globalUrls, 'from a secret of the stack');
    assert.match(JSON.stringify(globalUrls[1].Properties.SecretString), /"read_models\\":\\"postgres:\/\/tickethub:.*\/read_models/);
    assert.equal(ssmValue(repo.resources, secrets.get('TICKET_HUB_PROJECTOR__ORDERS_URL')), `http://orders.ticket-hub.internal:${PORTS.orders}`);
    assert.equal(
      ssmValue(repo.resources, secrets.get('TICKET_HUB_PROJECTOR__ACCOUNTS_JWKS_URL')),
      `http://accounts.ticket-hub.internal:${PORTS.accounts}/.well-known/jwks.json`,
    );
  });

  test('every service has a health check on /healthz, and the load balancer checks /readyz', () => {
    const port: Record<string, number> = {
      accounts: PORTS.accounts,
      gateway: PORTS.gateway,
      notifications: PORTS.notifications,
      orders: PORTS.orders,
      projector: PORTS.projector,
    };
    for (const [name, { containers }] of svc) {
      const c = appContainer(containers, name);
      const p = port[name] ?? PORTS.relay;
      assert.ok(c.Essential);
      assert.deepEqual(c.HealthCheck.Command, ['CMD-SHELL', `curl -fsS -o /dev/null http://127.0.0.1:${p}/healthz || exit 1`], name);
      assert.deepEqual(c.PortMappings[0].ContainerPort, p, name);
    }
    repo.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      HealthCheckPath: '/readyz',
      Port: PORTS.gateway,
      Matcher: { HttpCode: '200' },
    });
    const lb = svc.get('gateway')!.service.Properties.LoadBalancers;
    assert.equal(lb.length, 1);
    assert.equal(lb[0].ContainerPort, PORTS.gateway);
  });

  test('the relay runs one task per shard, started beside the old one on deployment (the standby rule)', () => {
    for (const shard of shards) {
      const { service, containers } = svc.get(`orders-relay-${shard.name}`)!;
      assert.equal(service.Properties.DesiredCount, 1);
      assert.deepEqual(service.Properties.DeploymentConfiguration.MinimumHealthyPercent, 100);
      assert.deepEqual(service.Properties.DeploymentConfiguration.MaximumPercent, 200);
      const c = appContainer(containers, `orders-relay-${shard.name}`);
      assert.deepEqual(c.Command, ['orders-relay', 'run', '--shard', shard.name]);
      const shardVars = c.Secrets.map((s: Json) => s.Name).filter((n: string) => n.startsWith('TICKET_HUB_SHARD_'));
      assert.deepEqual(shardVars, [shardUrlVariable(shard.name)], 'a relay reaches its own shard only');
    }
    const standby = services(synth({ relayStandbys: '1' }).resources);
    for (const shard of shards) assert.equal(standby.get(`orders-relay-${shard.name}`)!.service.Properties.DesiredCount, 2);
  });

  test('migrations and topics are done before a service starts', () => {
    const before = (name: string) => {
      const c = appContainer(svc.get(name)!.containers, name);
      return (c.DependsOn ?? []).filter((d: Json) => d.Condition === 'SUCCESS').map((d: Json) => d.ContainerName).sort();
    };
    assert.deepEqual(before('accounts'), ['migrate']);
    assert.deepEqual(before('orders'), ['migrate']);
    assert.deepEqual(before('notifications'), ['kafka-topics', 'migrate']);
    assert.deepEqual(before('projector'), ['kafka-topics', 'migrate']);
    for (const s of shards) assert.deepEqual(before(`orders-relay-${s.name}`), ['kafka-topics']);
    const topics = svc.get(`orders-relay-${shards[0].name}`)!.containers.find((c) => c.Name === 'kafka-topics');
    for (const t of TOPICS) assert.match(topics.Command[0], new RegExp(`--create --if-not-exists --topic ${t.replace('.', '\\.')} `));
    const migrate = svc.get('orders')!.containers.find((c) => c.Name === 'migrate');
    assert.deepEqual(migrate.Command, ['sh', '-c', 'stackctl migrate placement && stackctl migrate shards']);
    const readModels = svc.get('projector')!.containers.find((c) => c.Name === 'migrate');
    assert.deepEqual(readModels.Command, ['sh', '-c', 'stackctl migrate read-models']);
  });
});

describe('network', () => {
  test('security groups open only what each service needs', () => {
    const pg = 5432;
    const relays = shards.map((s) => `Ticket Hub orders-relay ${s.name} tasks`);
    const want = new Map<string, string[]>([
      ['Ticket Hub load balancer', ['0.0.0.0/0:80']],
      ['Ticket Hub gateway tasks', [`Ticket Hub load balancer:${PORTS.gateway}`]],
      [
        'Ticket Hub accounts tasks',
        [
          `Ticket Hub gateway tasks:${PORTS.accounts}`,
          `Ticket Hub orders tasks:${PORTS.accounts}`,
          `Ticket Hub orders tasks:${PORTS.accountsGrpc}`,
          `Ticket Hub projector tasks:${PORTS.accounts}`,
        ],
      ],
      ['Ticket Hub orders tasks', [`Ticket Hub gateway tasks:${PORTS.orders}`, `Ticket Hub projector tasks:${PORTS.orders}`]],
      ['Ticket Hub notifications tasks', []],
      ['Ticket Hub projector tasks', [`Ticket Hub gateway tasks:${PORTS.projector}`]],
      ...relays.map((r): [string, string[]] => [r, []]),
      [
        'Ticket Hub global Postgres',
        [`Ticket Hub accounts tasks:${pg}`, `Ticket Hub notifications tasks:${pg}`, `Ticket Hub orders tasks:${pg}`, `Ticket Hub projector tasks:${pg}`],
      ],
      ...shards.map((s): [string, string[]] => [
        `Ticket Hub shard ${s.name} Postgres`,
        [`Ticket Hub orders tasks:${pg}`, `Ticket Hub orders-relay ${s.name} tasks:${pg}`],
      ]),
      ['Ticket Hub Redis', ['Ticket Hub accounts tasks:6379', 'Ticket Hub gateway tasks:6379', 'Ticket Hub orders tasks:6379']],
      ['Ticket Hub Kafka brokers', [...relays, 'Ticket Hub notifications tasks', 'Ticket Hub projector tasks'].map((r) => `${r}:9092`).sort()],
    ]);
    for (const list of want.values()) list.sort();
    assert.deepEqual(ingress(repo.resources), want);
  });

  test('the data tier and the load balancer call out nowhere else', () => {
    const desc = (id: string) => repo.resources[id].Properties.GroupDescription as string;
    for (const [id, sg] of ofType(repo.resources, 'AWS::EC2::SecurityGroup')) {
      if (/Postgres|Redis|Kafka|load balancer/.test(desc(id))) {
        for (const rule of sg.Properties.SecurityGroupEgress ?? []) {
          assert.equal(rule.CidrIp, '255.255.255.255/32', `${desc(id)}: only CDK's "no egress" placeholder`);
        }
      }
    }
    const egress = ofType(repo.resources, 'AWS::EC2::SecurityGroupEgress').map(
      ([, r]) => `${desc(r.Properties.GroupId['Fn::GetAtt'][0])} → ${desc(r.Properties.DestinationSecurityGroupId['Fn::GetAtt'][0])}:${r.Properties.FromPort}`,
    );
    assert.deepEqual(egress, [`Ticket Hub load balancer → Ticket Hub gateway tasks:${PORTS.gateway}`]);
  });

  test('databases, Redis and the brokers sit in isolated subnets', () => {
    const isolated = new Set(
      ofType(repo.resources, 'AWS::EC2::Subnet')
        .filter(([, s]) => tagOf(s, 'aws-cdk:subnet-type') === 'Isolated')
        .map(([id]) => id),
    );
    assert.equal(isolated.size, 2, 'two AZs');
    const refs = (list: Json[]) => list.map((x) => x.Ref).sort();
    const data = [
      ...ofType(repo.resources, 'AWS::RDS::DBSubnetGroup').map(([, g]) => refs(g.Properties.SubnetIds)),
      ...ofType(repo.resources, 'AWS::ElastiCache::SubnetGroup').map(([, g]) => refs(g.Properties.SubnetIds)),
      ...ofType(repo.resources, 'AWS::MSK::Cluster').map(([, c]) => refs(c.Properties.BrokerNodeGroupInfo.ClientSubnets)),
    ];
    assert.equal(data.length, shards.length + 3);
    for (const list of data) assert.deepEqual(list, [...isolated].sort());
    repo.template.resourceCountIs('AWS::EC2::NatGateway', 1);
    repo.template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', { TransitEncryptionEnabled: false, AtRestEncryptionEnabled: true });
    repo.template.hasResourceProperties('AWS::MSK::Cluster', {
      ClientAuthentication: { Unauthenticated: { Enabled: true } },
      EncryptionInfo: { EncryptionInTransit: { ClientBroker: 'PLAINTEXT', InCluster: true } },
      NumberOfBrokerNodes: 2,
    });
  });
});

describe('metrics and alarms', () => {
  test('the metrics the alarms watch are the ones the Rust code exports', () => {
    const read = (f: string) => readFileSync(path.join(REPO_ROOT, f), 'utf8');
    const relay = read('services/orders/src/relay/worker.rs');
    for (const m of [METRICS.relayBacklog, METRICS.relayFailedRows, METRICS.relayLeader]) {
      assert.ok(relay.includes(`metrics::gauge!("${m.name}", &labels)`), `${m.name}, labelled by shard, in the relay`);
    }
    // The consumer runtime names its metrics after the service: `{service}_consumer_lag`.
    const runtime = read('platform/src/consumer/runtime.rs');
    assert.match(read('services/notifications/src/lib.rs'), /pub const SERVICE: &str = "notifications";/);
    for (const m of [METRICS.consumerLag, METRICS.consumerStalled]) {
      assert.ok(runtime.includes(`format!("{service}${m.name.slice('notifications'.length)}")`), m.name);
    }
    assert.match(read('services/projector/src/lib.rs'), /pub const SERVICE: &str = "projector";/);
    for (const m of [METRICS.projectorLag, METRICS.projectorStalled]) {
      assert.ok(runtime.includes(`format!("{service}${m.name.slice('projector'.length)}")`), m.name);
    }
    assert.ok(
      read('services/projector/src/supervisor.rs').includes(`metrics::gauge!("${METRICS.projectorRebuildProgress.name}", "generation" =>`),
      METRICS.projectorRebuildProgress.name,
    );
    assert.ok(read('platform/src/correlation.rs').includes(`"${METRICS.http5xx.name}", "method" => method.to_string(), "route" => route.clone(), "status" =>`));
    const config = collectorConfig({ service: 'orders-relay', port: PORTS.relay, logGroupName: '/x' });
    for (const m of Object.values(METRICS)) assert.ok(config.includes(`"^${m.name}$"`), m.name);
    assert.match(config, /targets: \["127\.0\.0\.1:3003"\]/);
  });

  test('alarms on each shard’s relay backlog and leader, the consumers’ lag and stalls, and 5xx', () => {
    const alarms = ofType(repo.resources, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    const on = (metric: string, dims: Record<string, string>) =>
      alarms.filter(
        (a) =>
          a.MetricName === metric &&
          a.Namespace === NAMESPACE &&
          JSON.stringify(Object.fromEntries((a.Dimensions ?? []).map((d: Json) => [d.Name, d.Value]))) === JSON.stringify(dims),
      );
    for (const s of shards) {
      assert.equal(on(METRICS.relayBacklog.name, { service: 'orders-relay', shard: s.name }).length, 1, `backlog ${s.name}`);
      assert.equal(on(METRICS.relayLeader.name, { service: 'orders-relay', shard: s.name }).length, 1, `leader ${s.name}`);
    }
    assert.equal(on(METRICS.consumerLag.name, { service: 'notifications', topic: 'orders.events' }).length, 1);
    assert.equal(on(METRICS.consumerStalled.name, { service: 'notifications', topic: 'orders.events' }).length, 1);
    assert.equal(on(METRICS.projectorStalled.name, { service: 'projector', topic: 'orders.events' }).length, 1);
    // The projector's lag, read as 0 while a rebuild replays the topic (its progress below 0.99).
    const stat = (m: Json) => m.MetricStat && { name: m.MetricStat.Metric.MetricName, dims: m.MetricStat.Metric.Dimensions, stat: m.MetricStat.Stat };
    const projectorLag = alarms.filter((a) => (a.Metrics ?? []).some((m: Json) => stat(m)?.name === METRICS.projectorLag.name));
    assert.equal(projectorLag.length, 1, 'the projector lag alarm');
    const [lag] = projectorLag;
    const byId = new Map<string, Json>(lag.Metrics.map((m: Json) => [m.Id, m]));
    assert.equal(lag.Metrics.find((m: Json) => m.ReturnData !== false).Expression, 'IF(FILL(rebuild, 1) < 0.99, 0, lag)');
    assert.deepEqual(stat(byId.get('lag')), {
      name: METRICS.projectorLag.name,
      dims: [{ Name: 'service', Value: 'projector' }, { Name: 'topic', Value: 'orders.events' }],
      stat: 'Maximum',
    });
    assert.deepEqual(stat(byId.get('rebuild')), {
      name: METRICS.projectorRebuildProgress.name,
      dims: [{ Name: 'service', Value: 'projector' }],
      stat: 'Minimum',
    });
    assert.equal(lag.TreatMissingData, 'breaching', 'no lag reported is a failure too');
    for (const service of ['gateway', 'accounts', 'orders', 'notifications', 'projector']) {
      assert.equal(on(METRICS.http5xx.name, { service }).length, 1, `5xx ${service}`);
    }
    const rate = alarms.filter((a) => (a.Metrics ?? []).some((m: Json) => /100 \* \(FILL\(target, 0\)/.test(m.Expression ?? '')));
    assert.equal(rate.length, 1, 'the load balancer 5xx rate');
    for (const a of alarms) assert.equal(a.AlarmActions.length, 1, 'every alarm notifies the topic');
  });
});
