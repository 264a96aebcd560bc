// What the app holds: one stack, named after the stage, for the shards of the shard map.

import { App } from 'aws-cdk-lib';
import { loadSettings } from './settings';
import { loadShards } from './shards';
import { TicketHubStack } from './stack';

export function buildApp(app: App): TicketHubStack {
  const settings = loadSettings(app.node);
  const shards = loadShards(settings.shardsFile);
  // Environment-agnostic on purpose: synth needs no account lookups (no credentials, no
  // network); `cdk deploy` puts it in the account and region of the caller's profile.
  return new TicketHubStack(app, `TicketHub-${settings.stage}`, {
    settings,
    shards,
    description: `Ticket Hub (${settings.stage}): gateway, accounts, orders, ${shards.length} shard relays, notifications, projector`,
  });
}
