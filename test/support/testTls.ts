/** The test CA and the server certificate it signed, made once per run by tlsGlobalSetup.ts (and trusted there). */
export const TEST_TLS_ENV = {
  caFile: 'STORELINK_TEST_TLS_CA_FILE',
  certFile: 'STORELINK_TEST_TLS_CERT_FILE',
  keyFile: 'STORELINK_TEST_TLS_KEY_FILE',
} as const;

export interface TestTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** The files, for `startEmulators({ tlsPort: 0, tls: { certFile, keyFile } })`. */
export function testTlsFiles(): TestTlsFiles {
  const read = (name: string): string => {
    const value = process.env[name];
    if (value === undefined || value.length === 0) {
      throw new Error(`${name} is not set: test/support/tlsGlobalSetup.ts must be a globalSetup of vitest.config.ts`);
    }
    return value;
  };
  return { caFile: read(TEST_TLS_ENV.caFile), certFile: read(TEST_TLS_ENV.certFile), keyFile: read(TEST_TLS_ENV.keyFile) };
}
