#!/usr/bin/env node
// The built CLI (npm ci runs `prepare` → tsc → dist/). See common/cli.ts.
import { run } from '../dist/common/cli.js';
run();
