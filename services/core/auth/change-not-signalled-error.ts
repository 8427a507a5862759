import { NonstopError } from '../../common/errors/nonstop-error';

/**
 * A token change is stored in the database, but the running core service could not be told
 * (its generation file is missing or not writable): until its cache's entries age out, it
 * may still accept what the change took away. Raised after the change, never instead of it.
 */
export class TokenChangeNotSignalledError extends NonstopError {
  readonly path: string;

  constructor(path: string, options?: { cause?: unknown }) {
    const why = (options?.cause as NodeJS.ErrnoException | undefined)?.code ?? 'error';
    super('token_change_not_signalled', `the change is stored, but the core service was not told through ${path} (${why})`, 500, options);
    this.path = path;
  }
}
