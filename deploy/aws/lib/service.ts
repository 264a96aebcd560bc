// One Ticket Hub service on Fargate: its task (the service container, the steps that must run
// before it, the metrics sidecar), its log group and its ECS service.

import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';

/** A container that must exit 0 before the service starts (migrations, topic creation). */
export interface InitStep {
  readonly name: string;
  readonly image: ecs.ContainerImage;
  readonly entryPoint?: string[];
  readonly command: string[];
  readonly environment?: Record<string, string>;
  readonly secrets?: Record<string, ecs.Secret>;
}

export interface TicketHubServiceProps {
  readonly cluster: ecs.ICluster;
  /** The binary's service name (`orders-relay`): the container's name and the metrics label. */
  readonly service: string;
  /** The ECS service's and log stream's name, when several run the same binary (`orders-relay-na-1`). */
  readonly instanceName?: string;
  readonly image: ecs.ContainerImage;
  readonly command: string[];
  /** The HTTP port: ops endpoints (`/healthz`, `/readyz`, `/metrics`) and the API. */
  readonly port: number;
  /** Other ports the container listens on (accounts' gRPC). */
  readonly extraPorts?: number[];
  readonly cpu: number;
  readonly memoryMiB: number;
  readonly cpuArchitecture: ecs.CpuArchitecture;
  /** Plain variables: only what is fixed by the task itself (listen addresses). */
  readonly environment: Record<string, string>;
  /** Everything else: Secrets Manager secrets and SSM parameters, resolved by ECS at start. */
  readonly secrets: Record<string, ecs.Secret>;
  readonly initSteps?: InitStep[];
  readonly securityGroup: ec2.ISecurityGroup;
  readonly subnets: ec2.SubnetSelection;
  readonly desiredCount: number;
  readonly minHealthyPercent: number;
  readonly maxHealthyPercent: number;
  /** Registers the tasks as `<name>.<namespace>` in the cluster's Cloud Map namespace. */
  readonly discoveryName?: string;
  /** Seconds ECS waits after SIGTERM before SIGKILL (the service shuts down gracefully). */
  readonly stopTimeoutSecs: number;
  readonly collectorImage: ecs.ContainerImage;
  /** The collector configuration (see metrics.ts), delivered as `AOT_CONFIG_CONTENT`. */
  readonly collectorConfig: ssm.IStringParameter;
  /** Where the collector writes embedded-metric records. */
  readonly metricsLogGroup: logs.ILogGroup;
  readonly logGroupName: string;
}

export class TicketHubService extends Construct {
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: TicketHubServiceProps) {
    super(scope, id);
    const name = props.instanceName ?? props.service;
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: props.logGroupName,
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const logging = (prefix: string) =>
      ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: prefix, mode: ecs.AwsLogDriverMode.NON_BLOCKING });

    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      family: name,
      cpu: props.cpu,
      memoryLimitMiB: props.memoryMiB,
      runtimePlatform: { cpuArchitecture: props.cpuArchitecture, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
    });

    this.container = this.taskDefinition.addContainer(props.service, {
      image: props.image,
      command: props.command,
      essential: true,
      environment: props.environment,
      secrets: props.secrets,
      logging: logging(props.service),
      portMappings: [props.port, ...(props.extraPorts ?? [])].map((containerPort) => ({ containerPort })),
      stopTimeout: Duration.seconds(props.stopTimeoutSecs),
      // Liveness: /healthz touches no dependency, so an outage of a database or the broker
      // never has ECS kill every task at once; readiness (/readyz, which does check them)
      // gates traffic at the load balancer. curl is in the image (compose/Dockerfile).
      healthCheck: {
        command: ['CMD-SHELL', `curl -fsS -o /dev/null http://127.0.0.1:${props.port}/healthz || exit 1`],
        interval: Duration.seconds(10),
        timeout: Duration.seconds(3),
        retries: 3,
        startPeriod: Duration.seconds(30),
      },
    });

    for (const step of props.initSteps ?? []) {
      const init = this.taskDefinition.addContainer(step.name, {
        image: step.image,
        entryPoint: step.entryPoint,
        command: step.command,
        essential: false,
        environment: step.environment,
        secrets: step.secrets,
        logging: logging(step.name),
      });
      this.container.addContainerDependencies({ container: init, condition: ecs.ContainerDependencyCondition.SUCCESS });
    }

    // Metrics: the ADOT collector scrapes this task's /metrics into CloudWatch (metrics.ts).
    // Not essential: a collector failure loses metrics, never the service.
    this.taskDefinition.addContainer('otel-collector', {
      image: props.collectorImage,
      essential: false,
      memoryReservationMiB: 64,
      secrets: { AOT_CONFIG_CONTENT: ecs.Secret.fromSsmParameter(props.collectorConfig) },
      logging: logging('otel-collector'),
      healthCheck: {
        // The image has no shell: exec form.
        command: ['CMD', '/healthcheck'],
        interval: Duration.seconds(30),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(30),
      },
    });
    this.taskDefinition.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
        resources: [props.metricsLogGroup.logGroupArn, `${props.metricsLogGroup.logGroupArn}:log-stream:*`],
      }),
    );
    this.taskDefinition.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['logs:DescribeLogGroups'], resources: ['*'] }),
    );

    this.service = new ecs.FargateService(this, 'Service', {
      cluster: props.cluster,
      serviceName: name,
      taskDefinition: this.taskDefinition,
      desiredCount: props.desiredCount,
      minHealthyPercent: props.minHealthyPercent,
      maxHealthyPercent: props.maxHealthyPercent,
      securityGroups: [props.securityGroup],
      vpcSubnets: props.subnets,
      assignPublicIp: false,
      circuitBreaker: { enable: true, rollback: true },
      enableExecuteCommand: false,
      // A records (awsvpc); ECS registers a task once its container health check passes.
      cloudMapOptions: props.discoveryName ? { name: props.discoveryName, dnsTtl: Duration.seconds(10) } : undefined,
    });
  }
}
