import { InMemoryCoordinatorStore } from '../../lib/adapters/local/in-memory-coordinator-store.js';
import { describeCoordinatorStoreContract } from '../contract/coordinator-store.contract.js';

describeCoordinatorStoreContract('InMemoryCoordinatorStore', () => new InMemoryCoordinatorStore());
