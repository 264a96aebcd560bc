// The accounts service's token signing key, made in the account and kept in Secrets Manager.
//
// accounts signs with an Ed25519 key in PKCS#8 PEM (`accounts gen-key` writes one; the service
// refuses to start without it). Secrets Manager cannot generate such a key, and a key written
// into the template would be readable by anyone who can read the template. So the secret is
// created with a random placeholder and, on the stack's first deployment, a small function
// (inline code, Node's own crypto and the runtime's AWS SDK) overwrites it with a fresh key
// pair's private half. The key never passes through the template, the CDK app or its output.
// Later deployments leave the key alone; replace it with `accounts gen-key` and
// `aws secretsmanager put-secret-value` (docs/aws.md, "How to deploy").

import { CustomResource, Duration } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';

/** Runs on the custom resource's events; returns the physical id (the secret's ARN). */
const HANDLER = `
const { generateKeyPairSync } = require('node:crypto');
const { SecretsManagerClient, PutSecretValueCommand } = require('@aws-sdk/client-secrets-manager');

exports.handler = async (event) => {
  const arn = event.ResourceProperties.SecretArn;
  const before = event.OldResourceProperties && event.OldResourceProperties.SecretArn;
  // A new key only for a new secret: an update of anything else must not log everyone out.
  if (event.RequestType === 'Create' || (event.RequestType === 'Update' && before !== arn)) {
    const { privateKey } = generateKeyPairSync('ed25519', {
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    await new SecretsManagerClient({}).send(new PutSecretValueCommand({ SecretId: arn, SecretString: privateKey }));
  }
  return { PhysicalResourceId: arn };
};
`;

export class JwtSigningKey extends Construct {
  /** The secret holding the PEM; pass it to the accounts task as an ECS secret. */
  readonly secret: secretsmanager.Secret;
  /** Completes once the secret holds a real key: the accounts service waits for it. */
  readonly ready: CustomResource;

  constructor(scope: Construct, id: string, props: { secretName: string }) {
    super(scope, id);
    this.secret = new secretsmanager.Secret(this, 'Secret', {
      secretName: props.secretName,
      description: 'Ticket Hub accounts: Ed25519 token signing key (PKCS#8 PEM), written by the stack at creation',
      // Placeholder until the function below writes the key; never a usable key.
      generateSecretString: { passwordLength: 32, excludePunctuation: true },
    });
    const fn = new lambda.Function(this, 'Generate', {
      runtime: lambda.Runtime.NODEJS_24_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline(HANDLER),
      timeout: Duration.seconds(30),
      description: 'Ticket Hub: writes a fresh Ed25519 signing key into its secret',
      logGroup: new logs.LogGroup(this, 'GenerateLogs', { retention: logs.RetentionDays.ONE_MONTH }),
    });
    this.secret.grantWrite(fn);
    const provider = new cr.Provider(this, 'Provider', {
      onEventHandler: fn,
      logGroup: new logs.LogGroup(this, 'ProviderLogs', { retention: logs.RetentionDays.ONE_MONTH }),
    });
    this.ready = new CustomResource(this, 'Key', {
      serviceToken: provider.serviceToken,
      properties: { SecretArn: this.secret.secretArn },
    });
  }
}
