/**
 * Connection strings for the samples: the environment's, or those of `storelink emulator` on its default ports with
 * the emulators' published development key.
 */
export const SERVICE_BUS =
  process.env['STORELINK_SERVICEBUS'] ??
  'Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true';

export const RELAY =
  process.env['STORELINK_RELAY'] ??
  'Endpoint=sb://127.0.0.1:9352;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true';
