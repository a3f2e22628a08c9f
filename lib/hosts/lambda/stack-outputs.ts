/**
 * A deployed job's stack outputs (see `FloeJobOutput` in lib/hosts/lambda/handler-contract.ts), read from CloudFormation or from the JSON
 * file `cdk deploy --outputs-file` writes (`{ "<stack>": { "FloeJobName": … } }`): emulators cannot deploy the stack,
 * so tests and emulator users hand the same names over in a file.
 */
import { readFile } from 'node:fs/promises';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import type { AwsClientOptions } from '../../adapters/aws/clients.js';
import { ErrorCode, FloeError } from '../../core/errors.js';
import { FloeJobOutput } from './handler-contract.js';

/** The outputs the CLI's control commands need. */
export interface FloeStackOutputs {
  readonly jobName: string;
  readonly checkpointBucket?: string;
  readonly checkpointDir?: string;
  readonly savepointDir?: string;
  readonly stateTable?: string;
  readonly coordinatorTable: string;
  readonly stateMachineArn: string;
  readonly coordinatorQueueUrl?: string;
  /** Input queue URL per vertex. */
  readonly queueUrls?: Readonly<Record<string, string>>;
}

const Key = FloeJobOutput;

/** Turns a flat output map into {@link FloeStackOutputs}; `source` names where it came from, for errors. */
export function parseStackOutputs(raw: Readonly<Record<string, unknown>>, source: string): FloeStackOutputs {
  const problems: string[] = [];
  const str = (key: string, required: boolean): string | undefined => {
    const v = raw[key];
    if (v === undefined || v === null || v === '') {
      if (required) problems.push(`output ${key} is missing`);
      return undefined;
    }
    if (typeof v !== 'string') {
      problems.push(`output ${key} must be a string`);
      return undefined;
    }
    return v;
  };
  const jobName = str(Key.JobName, true);
  const coordinatorTable = str(Key.CoordinatorTable, true);
  const stateMachineArn = str(Key.StateMachineArn, true);
  let queueUrls: Record<string, string> | undefined;
  const q = raw[Key.QueueUrls];
  if (q !== undefined) {
    try {
      const parsed: unknown = typeof q === 'string' ? JSON.parse(q) : q;
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || Object.values(parsed).some((u) => typeof u !== 'string')) throw new Error('not an object of strings');
      queueUrls = parsed as Record<string, string>;
    } catch (e) {
      problems.push(`output ${Key.QueueUrls} must be a JSON object of queue URLs by vertex (${(e as Error).message})`);
    }
  }
  if (problems.length > 0) throw new FloeError(ErrorCode.InvalidOptions, `${source} is not a Floe job's stack outputs: ${problems.join('; ')}`);
  const opt = (key: string) => str(key, false);
  return {
    jobName: jobName!,
    coordinatorTable: coordinatorTable!,
    stateMachineArn: stateMachineArn!,
    ...defined('checkpointBucket', opt(Key.CheckpointBucket)),
    ...defined('checkpointDir', opt(Key.CheckpointDir)),
    ...defined('savepointDir', opt(Key.SavepointDir)),
    ...defined('stateTable', opt(Key.StateTable)),
    ...defined('coordinatorQueueUrl', opt(Key.CoordinatorQueueUrl)),
    ...(queueUrls === undefined ? {} : { queueUrls }),
  };
}

function defined<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}

/**
 * Reads outputs from a `cdk deploy --outputs-file` JSON file. With one stack in it, `stack` may be omitted; with
 * several, it picks one. A flat object of outputs (no stack level) is accepted too.
 */
export async function readStackOutputsFile(file: string, stack?: string): Promise<FloeStackOutputs> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FloeError(ErrorCode.InvalidOptions, `cannot read the outputs file ${file}: ${code === 'ENOENT' ? 'it does not exist' : (e as Error).message}`, { cause: e });
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new FloeError(ErrorCode.InvalidOptions, `${file} must hold a JSON object of stacks and their outputs`);
  const top = parsed as Record<string, unknown>;
  if (Key.JobName in top) return parseStackOutputs(top, file);
  const stacks = Object.keys(top).filter((k) => top[k] && typeof top[k] === 'object');
  let name = stack;
  if (name === undefined) {
    const floe = stacks.filter((k) => Key.JobName in (top[k] as Record<string, unknown>));
    if (floe.length !== 1) {
      throw new FloeError(ErrorCode.InvalidOptions, `${file} has ${floe.length === 0 ? 'no Floe job stack' : `several Floe job stacks (${floe.join(', ')})`}; name one with --stack`);
    }
    name = floe[0]!;
  }
  const outputs = top[name];
  if (!outputs || typeof outputs !== 'object') throw new FloeError(ErrorCode.NotFound, `${file} has no stack '${name}' (it has: ${stacks.join(', ') || 'none'})`);
  return parseStackOutputs(outputs as Record<string, unknown>, `stack '${name}' in ${file}`);
}

/** Reads a deployed stack's outputs from CloudFormation. */
export async function describeStackOutputs(stack: string, options: AwsClientOptions & { client?: CloudFormationClient } = {}): Promise<FloeStackOutputs> {
  const client =
    options.client ??
    new CloudFormationClient({
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.region === undefined ? {} : { region: options.region }),
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    });
  let outputs: { OutputKey?: string; OutputValue?: string }[];
  try {
    const res = await client.send(new DescribeStacksCommand({ StackName: stack }));
    const s = res.Stacks?.[0];
    if (!s) throw new FloeError(ErrorCode.NotFound, `stack '${stack}' does not exist`);
    outputs = s.Outputs ?? [];
  } catch (e) {
    if (e instanceof FloeError) throw e;
    const message = (e as Error).message ?? String(e);
    if (/does not exist/i.test(message)) throw new FloeError(ErrorCode.NotFound, `stack '${stack}' does not exist: ${message}`, { cause: e });
    throw new FloeError(ErrorCode.NotFound, `reading the outputs of stack '${stack}' failed: ${message}`, { cause: e });
  }
  const raw: Record<string, string> = {};
  for (const o of outputs) if (o.OutputKey !== undefined && o.OutputValue !== undefined) raw[o.OutputKey] = o.OutputValue;
  return parseStackOutputs(raw, `stack '${stack}'`);
}
