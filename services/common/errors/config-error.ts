import { NonstopError } from './nonstop-error';

/** Configuration that cannot be used. `problems` has one entry per bad variable. */
export class ConfigError extends NonstopError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super('config_invalid', problems.join('; '), 500);
    this.problems = problems;
  }
}
