import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { beforeAll } from 'vitest';
import { DynamoDbCoordinatorStore, createCoordinatorTable } from '../../lib/adapters/aws/dynamodb-coordinator-store.js';
import { describeCoordinatorStoreContract } from '../contract/coordinator-store.contract.js';

// On the emulator that test/support/moto-global-setup.ts points AWS_ENDPOINT_URL at. Conditional writes are
// serialized in-process as emulator mode does (moto's are not atomic); every test uses a job of its own in one table.

const tableName = `floe-coordinator-contract-${process.pid}`;
const client = new DynamoDBClient({});

beforeAll(async () => {
  await createCoordinatorTable(client, tableName);
});

describeCoordinatorStoreContract('DynamoDbCoordinatorStore on the emulator', () => new DynamoDbCoordinatorStore({ client, tableName, serializeLocalWrites: true }));
