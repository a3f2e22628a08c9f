/**
 * `cdk deploy -c job=examples/orders.ts -c args='--queue <url> --table <name>'` synthesizes a stack whose source
 * function may consume the queue, whose functions that may commit may write the table, and that cdk-nag passes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFloeApp } from '../../infra/floe-app.js';
import type { FloeJob } from '../../infra/floe-job.js';
import { allowedFor } from './support/iam-policies.js';

const fixtures = { operatorEntry: 'test/fixtures/handlers/operator.ts', coordinatorEntry: 'test/fixtures/handlers/coordinator.ts' };
const queue = 'https://sqs.eu-west-1.amazonaws.com/111122223333/orders';
let outdir: string;
let app: App;
let stack: Stack;
let job: FloeJob;
let template: Template;

beforeAll(async () => {
  outdir = mkdtempSync(join(tmpdir(), 'floe-cdk-orders-'));
  app = new App({ outdir, context: { job: 'examples/orders.ts', args: `--queue ${queue} --table totals`, removalPolicy: 'destroy', deletionProtection: 'false', ...fixtures } });
  ({ stack, job } = await createFloeApp(app));
  template = Template.fromStack(stack);
});
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

describe('examples/orders.ts deployed', () => {
  it('lets the source function alone consume the queue, and the functions that may commit write the table', () => {
    const functions = [...[...job.vertices].map(([id, v]) => [`vertex ${id}`, v.function.role!] as const), ['coordinator', job.coordinatorFunction.role!] as const, ['control API', job.controlApiFunction.role!] as const];
    const who = (test: (action: string, resource: string) => boolean) =>
      functions.filter(([, role]) => allowedFor(stack, template, role).some((a) => test(a.action, a.resource))).map(([name]) => name).sort();
    const source = [...job.vertices.values()].find((v) => v.vertex.isSource)!.vertex.id;
    expect(who((a, r) => a === 'sqs:ReceiveMessage' && r.includes(':sqs:eu-west-1:111122223333:orders'))).toEqual([`vertex ${source}`]);
    expect(who((a, r) => a === 'dynamodb:PutItem' && r.includes('table/totals'))).toEqual([...[...job.vertices.keys()].map((id) => `vertex ${id}`), 'coordinator'].sort());
  });

  it('stays clean under cdk-nag', () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(app);
    expect([...report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`), ...Annotations.fromStack(stack).findError('*', Match.anyValue()).map((e) => String(e.entry.data))]).toEqual([]);
  });
});
