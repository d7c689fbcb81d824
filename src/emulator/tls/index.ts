export {
  DEFAULT_SERVER_NAMES,
  certificateFingerprint,
  createCertificateAuthority,
  ensureDevelopmentCertificates,
  issueServerCertificate,
  readCertificateFiles,
} from './developmentCertificates.js';
export type { DevelopmentCertificates, DevelopmentCertificatesOptions, KeyAndCertificate } from './developmentCertificates.js';
