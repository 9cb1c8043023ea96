#!/usr/bin/env node
import { createLogger, listenWithGrace, parseListen, runMain } from '@platform/http-common';
import { readFileSync } from 'node:fs';
import { buildApp } from './app.js';
import { describeConfig, readConfig } from './config.js';
import { SHUTDOWN } from './shutdown.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

// The SDK prints a multi-line notice (to stderr, amid the JSON logs) that releases after early 2027
// will need Node 22. This service runs on Node 20 with a locked SDK version; the README says so.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

runMain(async () => {
  const warnings: string[] = [];
  const config = readConfig({ version: process.env.APP_VERSION || pkg.version, warn: (w) => warnings.push(w) });
  const log = createLogger(config.logLevel);
  for (const warning of warnings) log.warn(warning);
  // Baked in at build time: the Dockerfile passes them as build arguments into the environment.
  const version = {
    version: process.env.APP_VERSION || pkg.version,
    githash: process.env.GIT_COMMIT || 'unknown',
    buildstamp: process.env.BUILD_TIME || 'unknown',
  };
  log.info({ config: describeConfig(config), version }, 'starting ecr-api');
  if (config.aws.endpoint && config.aws.listStrategy === 'tagging') {
    log.warn(
      'an AWS endpoint override is set with --list-strategy tagging: emulators such as moto return no ECR repositories from the tagging API; use --list-strategy describe with them',
    );
  }
  const app = await buildApp({ config, version, logger: log });
  await listenWithGrace(app, parseListen(config.listen), SHUTDOWN);
});
