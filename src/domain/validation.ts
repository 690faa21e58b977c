/**
 * How opsflow reports invalid input and config, the same way everywhere (the
 * config loader, the SDK, and workflows in their sandbox): one line per
 * problem, `path: reason`, with missing fields called "required".
 */
import type { z } from 'zod';

/** Missing fields read "required" rather than zod's "expected string, received undefined". */
export const readableErrors = {
  error: (issue: { input?: unknown; code?: string }) =>
    (issue.code === 'invalid_type' || issue.code === 'invalid_union') && issue.input === undefined ? 'required' : undefined,
};

/** Turns zod issues into `path: reason` lines joined by "; ". */
export function formatIssues(error: z.ZodError, root = ''): string {
  return error.issues
    .map((issue) => {
      const path = [root, ...issue.path.map(String)].filter(Boolean).join('.');
      return `${path || '(root)'}: ${issue.message}`;
    })
    .join('; ');
}
