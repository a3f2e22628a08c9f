import { InMemoryStateStore } from '../../lib/adapters/local/in-memory-state-store.js';
import { describeStateStoreContract } from '../contract/state-store.contract.js';

describeStateStoreContract('InMemoryStateStore', () => new InMemoryStateStore());
