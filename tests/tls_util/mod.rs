//! Test certificates, made at test time with rcgen: a CA and a server
//! certificate it signs, valid from yesterday to tomorrow (so a clock that
//! is off by more than a day, such as one stuck at 1970, fails them).

#![allow(dead_code, reason = "each test file uses only part of these helpers")]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mkernel::net::tls::rustls;

/// A CA and one server certificate signed by it.
pub struct Pki {
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

/// The civil date (year, month, day) `days` days after 1970-01-01.
fn civil(days: i64) -> (i32, u8, u8) {
    // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// Days from 1970-01-01 to today (UTC).
fn today() -> i64 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64
}

fn validity(p: &mut CertificateParams, from: i64, to: i64) {
    let (y, m, d) = civil(from);
    p.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil(to);
    p.not_after = rcgen::date_time_ymd(y, m, d);
}

impl Pki {
    /// A CA named `ca_name` and a server certificate for `names` (DNS
    /// names or IP addresses), both valid from yesterday to tomorrow.
    pub fn new(ca_name: &str, names: &[&str]) -> Pki {
        let t = today();
        Pki::valid(ca_name, names, t - 1, t + 2)
    }

    /// As [`Pki::new`], with the server certificate valid for days
    /// `from..to` since 1970 (the CA: yesterday to tomorrow).
    pub fn valid(ca_name: &str, names: &[&str], from: i64, to: i64) -> Pki {
        let t = today();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        validity(&mut ca, t - 1, t + 2);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        validity(&mut p, from, to);
        let cert = p.signed_by(&key, &issuer).unwrap();
        Pki {
            ca_der: ca_cert.der().clone(),
            ca_pem: ca_cert.pem(),
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server configuration presenting the certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![self.cert_der.clone(), self.ca_der.clone()], key)
                .unwrap(),
        )
    }

    /// A client configuration trusting this CA only.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// The certificate chain and the key, PEM, as the examples read them.
    pub fn server_bundle(&self) -> String {
        format!("{}{}{}", self.cert_pem, self.ca_pem, self.key_pem)
    }
}

/// `data` zero-padded to whole 512-byte sectors (a block device image).
pub fn sectors(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}
