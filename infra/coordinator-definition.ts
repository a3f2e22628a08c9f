/**
 * The state machines' definitions: the coordinator's comes from the ASL generator in
 * lib/adapters/aws/coordinator-state-machine.ts (one Standard execution per checkpoint, tasks answered through the
 * coordinator-tasks queue); the ticker's, which drives sub-minute checkpoint intervals, is defined here.
 * Deploy-time values are `${Name}` placeholders that FloeJob fills with `DefinitionSubstitutions`.
 */
import { coordinatorStateMachineDefinition } from '../lib/adapters/aws/coordinator-state-machine.js';
import type { CheckpointSchedule } from './checkpoint-schedule.js';
import { COORDINATOR_TASK_MESSAGE_VERSION } from '../lib/coordination/checkpoint-tasks.js';
import { CoordinatorAttr, jobRowKey } from '../lib/adapters/aws/dynamodb-coordinator-schema.js';

/** The `DefinitionSubstitutions` FloeJob provides to both state machines. */
export const Substitution = {
  /** URL of the coordinator-tasks queue. */
  CoordinatorQueueUrl: 'CoordinatorQueueUrl',
  /** Name of the coordinator table. */
  CoordinatorTableName: 'CoordinatorTableName',
} as const;
export type Substitution = (typeof Substitution)[keyof typeof Substitution];

/** A `${Name}` placeholder for a substitution. */
export function placeholder(name: Substitution): string {
  return `\${${name}}`;
}

/** What a coordinator definition is built from; deploy-time values arrive as substitutions. */
export interface CoordinatorDefinitionParams {
  /** The job's name. */
  readonly jobName: string;
  /** `checkpoint.timeout`, in milliseconds. */
  readonly checkpointTimeoutMs: number;
}

/** Builds the coordinator state machine's ASL as JSON text, using the placeholders of {@link Substitution}. */
export type CoordinatorDefinitionFactory = (params: CoordinatorDefinitionParams) => string;

/** The coordinator's ASL from the shared generator, which emulator mode runs too. */
export const defaultCoordinatorDefinition: CoordinatorDefinitionFactory = (params) =>
  JSON.stringify(
    coordinatorStateMachineDefinition({
      job: params.jobName,
      tableName: placeholder(Substitution.CoordinatorTableName),
      tasksQueueUrl: placeholder(Substitution.CoordinatorQueueUrl),
      // A backstop behind the countdown Trigger sets up from checkpoint.timeout: twice the timeout, at least an hour.
      executionTimeoutSeconds: Math.max(3600, Math.ceil((2 * params.checkpointTimeoutMs) / 1000)),
    }),
  );

/** The coordinator's periodic heartbeat, as the coordinator-tasks queue's consumer parses it (`type: 'tick'`). */
export function tickMessage(jobName: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { v: COORDINATOR_TASK_MESSAGE_VERSION, type: 'tick', job: jobName, ...extra };
}

/**
 * The ticker (an Express state machine the schedule starts once a minute when `checkpoint.interval` is below a
 * minute): sends `ticksPerExecution` ticks to the coordinator-tasks queue, `tickSeconds` apart. Each tick lets the
 * coordinator's trigger decider look at the clock; it alone decides whether a checkpoint starts. It first reads the
 * job row's `quiet` attribute (one `dynamodb:getItem`): a quiet job (periodic checkpoints paused,
 * lib/core/coordinator/quiet.ts) gets one tick and the execution ends, so an idle job pays for a short execution a
 * minute rather than a minute-long one. If the read fails the ticker ticks as usual.
 */
export function tickerDefinition(jobName: string, schedule: CheckpointSchedule): string {
  const last = schedule.ticksPerExecution - 1;
  return JSON.stringify({
    Comment: `Floe job '${jobName}': ${schedule.ticksPerExecution} coordinator ticks, ${schedule.tickSeconds}s apart (one when the job is quiet)`,
    QueryLanguage: 'JSONPath',
    StartAt: 'Init',
    States: {
      Init: { Type: 'Pass', Parameters: { tick: 0, 'execution.$': '$$.Execution.Name' }, Next: 'ReadQuiet' },
      ReadQuiet: {
        Type: 'Task',
        Resource: 'arn:aws:states:::dynamodb:getItem',
        Parameters: {
          TableName: placeholder(Substitution.CoordinatorTableName),
          Key: { [CoordinatorAttr.pk]: { S: jobRowKey(jobName) } },
          ProjectionExpression: '#q',
          ExpressionAttributeNames: { '#q': CoordinatorAttr.quiet },
        },
        ResultSelector: { 'item.$': '$.Item' },
        ResultPath: '$.row',
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: null, Next: 'Tick' }],
        Next: 'Quiet',
      },
      Quiet: {
        Type: 'Choice',
        Choices: [
          {
            And: [
              { Variable: `$.row.item.${CoordinatorAttr.quiet}.BOOL`, IsPresent: true },
              { Variable: `$.row.item.${CoordinatorAttr.quiet}.BOOL`, BooleanEquals: true },
            ],
            Next: 'Once',
          },
        ],
        Default: 'Tick',
      },
      // The last tick of the execution: one tick, then Done.
      Once: { Type: 'Pass', Parameters: { tick: last, 'execution.$': '$.execution' }, Next: 'Tick' },
      Tick: {
        Type: 'Task',
        Resource: 'arn:aws:states:::sqs:sendMessage',
        Parameters: {
          QueueUrl: placeholder(Substitution.CoordinatorQueueUrl),
          MessageBody: tickMessage(jobName, { 'tick.$': '$.tick', 'execution.$': '$.execution' }),
        },
        ResultPath: null,
        Retry: [{ ErrorEquals: ['States.ALL'], IntervalSeconds: 1, MaxAttempts: 2, BackoffRate: 2 }],
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: null, Next: 'Count' }],
        Next: 'Count',
      },
      Count: { Type: 'Pass', Parameters: { 'tick.$': 'States.MathAdd($.tick, 1)', 'execution.$': '$.execution' }, Next: 'More' },
      More: { Type: 'Choice', Choices: [{ Variable: '$.tick', NumericLessThan: schedule.ticksPerExecution, Next: 'Wait' }], Default: 'Done' },
      Wait: { Type: 'Wait', Seconds: schedule.tickSeconds, Next: 'Tick' },
      Done: { Type: 'Succeed' },
    },
  });
}
