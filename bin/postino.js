#!/usr/bin/env node
// The built CLI (npm ci runs `prepare` → tsc → dist/). See app/cli.ts.
import { run } from '../dist/app/cli.js';
run();
