import { STATUS_CODES } from 'node:http';
import Type from 'typebox';

/**
 * RFC 9457 problem details. Every error the services answer with is one of these, serialised as
 * `application/problem+json` by the error handler in error-handler.ts.
 */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: FieldError[];
}

export interface FieldError {
  field: string;
  message: string;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export function statusTitle(status: number): string {
  return TITLES[status] ?? STATUS_CODES[status] ?? (status >= 500 ? 'Server Error' : 'Client Error');
}

/** An error that carries the HTTP answer it should produce. */
export class HttpProblem extends Error {
  readonly statusCode: number;
  readonly title: string;
  readonly headers: Record<string, string>;
  readonly errors: FieldError[] | undefined;

  constructor(
    status: number,
    detail: string,
    opts: { title?: string; headers?: Record<string, string>; errors?: FieldError[]; cause?: unknown } = {},
  ) {
    super(detail, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'HttpProblem';
    this.statusCode = status;
    this.title = opts.title ?? statusTitle(status);
    this.headers = opts.headers ?? {};
    this.errors = opts.errors;
  }

  toBody(): ProblemBody {
    const body: ProblemBody = { type: 'about:blank', title: this.title, status: this.statusCode, detail: this.message };
    if (this.errors) body.errors = this.errors;
    return body;
  }
}

export const badRequest = (detail: string, errors?: FieldError[]) => new HttpProblem(400, detail, errors ? { errors } : {});
export const notFound = (detail: string) => new HttpProblem(404, detail);
export const conflict = (detail: string) => new HttpProblem(409, detail);
export const unavailable = (detail: string, cause?: unknown) => new HttpProblem(503, detail, { headers: { 'retry-after': '1' }, cause });

/** The TypeBox schema of a problem body, for route response schemas and OpenAPI. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    errors: Type.Optional(Type.Array(Type.Object({ field: Type.String(), message: Type.String() }))),
  },
  { $id: 'Problem', description: 'RFC 9457 problem details (application/problem+json)' },
);
