/**
 * The CDK app (cdk.json: `npx tsx infra/app.ts`): one stack per job, checked by cdk-nag's AwsSolutions pack.
 *
 *   npm run synth -- -c job=examples/wordcount.ts -c args="--input s3://in/words --output s3://out/counts"
 */
import { FloeError } from '../lib/core/errors.js';
import { createFloeApp } from './floe-app.js';

try {
  const { app } = await createFloeApp();
  app.synth();
} catch (e) {
  // A problem with the job or the context is the user's to fix: say what it is, without a stack trace.
  if (!(e instanceof FloeError)) throw e;
  console.error(e.message);
  process.exitCode = 1;
}
