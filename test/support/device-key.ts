// Placeholder: replaced once the agent's key file format is final.
export function loadDeviceKey(_stateDir: string): { deviceId: string; privateKey: Uint8Array } | undefined {
  return undefined;
}
