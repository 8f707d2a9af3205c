/**
 * Failure messages and stack traces travel in an encoded payload instead of plain text, so the
 * payload codec encrypts them with everything else (they can quote instance names or SQL errors).
 * The worker loads this file into the workflow sandbox by path, hence a module of its own.
 */
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
