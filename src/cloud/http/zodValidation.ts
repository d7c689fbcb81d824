/**
 * Route schemas are the zod schemas of src/core: this type provider gives handlers their parsed types, and the
 * validator compiler answers a failed check with the API's error (the first issue, naming its field).
 */
import type { FastifySchemaCompiler, FastifyTypeProvider } from 'fastify';
import { z } from 'zod';
import { StorelinkError } from '../../core/errors.js';
import { storeIdSchema } from '../../core/names.js';
import { describeIssue, parseReportingInput } from '../../core/validation.js';

export interface ZodTypeProvider extends FastifyTypeProvider {
  readonly validator: this['schema'] extends z.ZodType ? z.output<this['schema']> : unknown;
  readonly serializer: this['schema'] extends z.ZodType ? z.input<this['schema']> : unknown;
}

export const storeParamsSchema = z.object({ storeId: storeIdSchema });

export const zodValidatorCompiler: FastifySchemaCompiler<z.ZodType> = ({ schema, httpPart }) => (data: unknown) => {
  const parsed = parseReportingInput(schema, data);
  if (parsed.success) return { value: parsed.data };
  const { field, text } = describeIssue(parsed.error.issues[0]!);
  // A body is an operation request (the only route that takes one); a path names its parameter, which says enough.
  const message = httpPart === 'body' ? `invalid operation request: ${text}` : text;
  return { error: new StorelinkError('OPERATION_INVALID', message, { field, cause: parsed.error }) };
};
