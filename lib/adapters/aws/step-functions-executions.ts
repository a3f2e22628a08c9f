import { ExecutionAlreadyExists, StartExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import { checkpointExecutionInput, checkpointExecutionName, type CheckpointExecutions, type CheckpointRequestInput } from '../../coordination/checkpoint-tasks.js';

/** Options of {@link StepFunctionsCheckpointExecutions}. */
export interface StepFunctionsCheckpointExecutionsOptions {
  readonly client: SFNClient;
  readonly stateMachineArn: string;
  readonly job: string;
}

/**
 * Starts checkpoint executions with StartExecution. Names are per checkpoint, so starting one twice is harmless:
 * with the same input while it runs Step Functions returns the same execution; otherwise it refuses the name
 * (`ExecutionAlreadyExists`), which here means "that checkpoint has its execution already".
 */
export class StepFunctionsCheckpointExecutions implements CheckpointExecutions {
  constructor(private readonly options: StepFunctionsCheckpointExecutionsOptions) {}

  async start(checkpointId: number, request?: CheckpointRequestInput): Promise<{ started: boolean; executionArn?: string }> {
    const { client, stateMachineArn, job } = this.options;
    try {
      const res = await client.send(
        new StartExecutionCommand({ stateMachineArn, name: checkpointExecutionName(job, checkpointId), input: checkpointExecutionInput(checkpointId, request) }),
      );
      return { started: true, ...(res.executionArn === undefined ? {} : { executionArn: res.executionArn }) };
    } catch (e) {
      if (e instanceof ExecutionAlreadyExists) return { started: false };
      throw e;
    }
  }
}
