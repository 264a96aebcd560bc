// The shard map as the deployment needs it: which shards exist and which region each serves.
//
// Read from the repository's `shards.toml` at synth time, so adding a shard there adds its RDS
// instance, its connection secret and its relay service here with no code change. Only names
// and regions matter to the deployment: URLs in the file point at the local stack and are
// overridden per shard in the tasks (`TICKET_HUB_SHARD_<NAME>_URL`, as compose does), and the
// services themselves still validate the whole file at start (`shard-router`).

import { readFileSync } from 'node:fs';
import { parse } from 'smol-toml';

export interface Shard {
  /** `na-1`: the `[shards.NAME]` key. */
  readonly name: string;
  /** `NA`: the region whose `shards` list names it. */
  readonly region: string;
}

/** Shard names as `shard-router` accepts them: 1-63 lower-case letters, digits or `-`. */
const SHARD_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * The shards of `path`, in file order. Refuses what `shard-router` would refuse at start and
 * what would make a broken deployment: no shard, a shard no region lists, a region naming an
 * unknown shard, a shard in two regions, a malformed name.
 */
export function loadShards(path: string): Shard[] {
  const doc = parse(readFileSync(path, 'utf8')) as {
    regions?: Record<string, { shards?: unknown }>;
    shards?: Record<string, unknown>;
  };
  const defined = Object.keys(doc.shards ?? {});
  const regionOf = new Map<string, string>();
  for (const [region, body] of Object.entries(doc.regions ?? {})) {
    const names = body.shards;
    if (!Array.isArray(names) || names.length === 0) {
      throw new Error(`${path}: regions.${region}.shards: a region needs at least one shard`);
    }
    for (const name of names) {
      if (typeof name !== 'string' || !defined.includes(name)) {
        throw new Error(`${path}: regions.${region}.shards: no [shards.${String(name)}] defines it`);
      }
      const other = regionOf.get(name);
      if (other !== undefined) {
        throw new Error(`${path}: shard ${name} is listed by regions ${other} and ${region}`);
      }
      regionOf.set(name, region);
    }
  }
  if (defined.length === 0) {
    throw new Error(`${path}: no [shards.*] section`);
  }
  const ids = new Map<string, string>();
  return defined.map((name) => {
    if (!SHARD_NAME.test(name)) {
      throw new Error(`${path}: shards.${name}: a shard name is 1-63 lower-case letters, digits or '-'`);
    }
    const region = regionOf.get(name);
    if (region === undefined) {
      throw new Error(`${path}: shards.${name}: no region lists this shard`);
    }
    const clash = ids.get(shardId(name));
    if (clash !== undefined) {
      throw new Error(`${path}: shards ${clash} and ${name} would share the construct id ${shardId(name)}`);
    }
    ids.set(shardId(name), name);
    return { name, region };
  });
}

/**
 * The variable that overrides a shard's URL, as `shard-router` reads it: the name upper-cased
 * with every non-alphanumeric character turned into `_` (`na-1` → `TICKET_HUB_SHARD_NA_1_URL`).
 */
export function shardUrlVariable(name: string): string {
  return `TICKET_HUB_SHARD_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_URL`;
}

/** `na-1` → `Na1`: a shard name as a piece of a CloudFormation logical id. */
export function shardId(name: string): string {
  return name
    .split(/[^a-zA-Z0-9]+/)
    .filter((p) => p.length > 0)
    .map((p) => p[0].toUpperCase() + p.slice(1))
    .join('');
}
