/** Custom search attributes: filter runs in the Web UI / `temporal workflow list` by instance or operation. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const DbopsInstance = defineSearchAttributeKey('DbopsInstance', SearchAttributeType.KEYWORD);
export const DbopsOperation = defineSearchAttributeKey('DbopsOperation', SearchAttributeType.KEYWORD);

export const searchAttributeKeys = [DbopsInstance, DbopsOperation];

/** The `--search-attribute NAME=Type` arguments of `temporal server start-dev`. */
export function devServerSearchAttributeArgs(): string[] {
  return searchAttributeKeys.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]);
}
