// The CDK app: `cdk synth`/`cdk deploy` run it (cdk.json), and so does `./dev aws synth`
// directly, with no CDK CLI and no network: `tsx bin/app.ts [-c key=value]...` writes the
// cloud assembly (the CloudFormation template and the custom resources' code) to cdk.out/.

import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { buildApp } from '../lib/app';

/** `-c key=value` / `--context key=value` pairs, as the CDK CLI takes them. */
function contextFromArgs(args: string[]): Record<string, string> {
  const context: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a !== '-c' && a !== '--context') {
      throw new Error(`unknown argument ${a}: expected -c key=value`);
    }
    const kv = args[++i] ?? '';
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`-c ${kv}: expected key=value`);
    context[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return context;
}

// Under the CLI, CDK_OUTDIR and CDK_CONTEXT_JSON come from it; run directly, cdk.out/ here.
const app = new App({
  outdir: process.env.CDK_OUTDIR ?? path.resolve(__dirname, '..', 'cdk.out'),
  context: contextFromArgs(process.argv.slice(2)),
});
const stack = buildApp(app);
const assembly = app.synth();
if (process.env.CDK_OUTDIR === undefined) {
  console.log(path.join(assembly.directory, stack.templateFile));
}
