// PLACEHOLDER: the in-memory index (written by the lead developer). API:
//   class Registry extends EventEmitter {
//     replaceFunctions(specs: readonly FunctionSpec[]): void   // full snapshot from one source
//     replaceApiKeys(records: readonly ApiKeyRecord[]): void     // full snapshot
//     getFunction(functionId: string): RoutableFunction | undefined
//     getApiKey(sha256hex: string): ApiKeyRecord | undefined
//   }
export {};
