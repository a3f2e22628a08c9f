#!/usr/bin/env node
// The `floe` command. tsx is registered first so the CLI (TypeScript) and the user's TypeScript job files import at runtime.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../lib/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
