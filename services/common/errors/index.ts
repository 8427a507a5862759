export { NonstopError, isNonstopError } from './nonstop-error';
export { ApiError, errorBody, type ErrorBody } from './api-error';
export { ErrorCodes, type ErrorCodeName } from './codes';
export { ConfigError } from './config-error';
