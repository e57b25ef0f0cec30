//! Why the broker connection failed, in words an operator can act on.
//!
//! rumqttc reports a failed connection as one error enum whose text depends on where the
//! failure surfaced: a certificate the client refused comes back as an I/O error wrapping
//! the rustls error, a client certificate the broker refused arrives as a TLS alert while
//! the CONNECT is being sent or its CONNACK read (again inside an I/O error, printed with
//! `Debug`), and a refused login is a CONNACK reason code. This module sorts them into
//! three kinds, keeping "the broker (or its certificate) refused us" apart from "the
//! network broke", and writes one message naming TLS or the credentials, so that
//! `MqttIngest::ready()` and `MqttIngest::last_error()` say why the ingest is not
//! connected rather than only that it is not.

use rumqttc::v5::mqttbytes::{self, v5::ConnectReturnCode};
use rumqttc::v5::{ConnectionError, StateError, TlsError};

/// What kind of failure stopped the last connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MqttFailureKind)]
pub enum FailureKind {
    /// The TLS handshake failed: the broker's certificate was not trusted, or the broker
    /// refused ours (missing, expired, from a CA it does not trust). Retrying does not
    /// help until a certificate or the configuration changes.
    Tls,
    /// The broker answered the CONNECT with a refusal (bad user name or password, not
    /// authorized, ...). Also not cured by retrying.
    Refused,
    /// The network or the broker went away (connection refused, reset, timeout): usually
    /// transient.
    Network,
}

/// The reason the last connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectionFailure {
    /// Its kind.
    pub kind: FailureKind,
    /// One line for the log and the operator, e.g. `TLS: invalid peer certificate:
    /// UnknownIssuer (the broker's certificate does not chain to mqtt.tls.ca_cert)`.
    pub message: String,
}

impl std::fmt::Display for ConnectionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ConnectionFailure {
    /// Sorts a rumqttc connection error.
    pub fn of(e: &ConnectionError) -> ConnectionFailure {
        if let ConnectionError::ConnectionRefused(code) = e {
            return ConnectionFailure {
                kind: FailureKind::Refused,
                message: refused(*code),
            };
        }
        if let Some(tls) = rustls_error(e) {
            return ConnectionFailure {
                kind: FailureKind::Tls,
                message: format!("TLS: {tls}{}", tls_hint(tls)),
            };
        }
        ConnectionFailure {
            kind: FailureKind::Network,
            message: match io_error(e) {
                // The I/O error itself: rumqttc's own text prints it with `Debug`.
                Some(io) => format!("network: {io}"),
                None => format!("network: {e}"),
            },
        }
    }
}

fn refused(code: ConnectReturnCode) -> String {
    use ConnectReturnCode as C;
    let hint = match code {
        C::BadUserNamePassword | C::NotAuthorized => {
            " (check mqtt.username and mqtt.password or SWITCHYARD_MQTT_PASSWORD)"
        }
        C::ClientIdentifierNotValid => " (check mqtt.client_id)",
        C::ServerUnavailable | C::ServerBusy => " (the broker is overloaded; will retry)",
        _ => "",
    };
    format!("the broker refused the connection: {code:?}{hint}")
}

/// What a rustls error usually means for this client, so the message points at the
/// setting to fix.
fn tls_hint(e: &rustls::Error) -> &'static str {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            " (the broker's certificate does not chain to mqtt.tls.ca_cert)"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            " (the broker's certificate does not name mqtt.host)"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            " (the broker's certificate has expired)"
        }
        E::InvalidCertificate(_) => " (the broker's certificate was not accepted)",
        E::AlertReceived(A::CertificateRequired) => {
            " (the broker requires a client certificate: set mqtt.tls.client_cert and client_key)"
        }
        E::AlertReceived(
            A::CertificateExpired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateRevoked
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => " (the broker refused the client certificate mqtt.tls.client_cert)",
        E::AlertReceived(A::HandshakeFailure) => {
            " (the broker ended the handshake: no common protocol, or a client certificate it requires)"
        }
        _ => "",
    }
}

/// The I/O error under a connection error. Listed by hand: rumqttc's state errors do not
/// expose the error they wrap as a `source()` (a TLS alert read while waiting for the
/// CONNACK arrives as `MqttState(Deserialization(Io(..)))`).
fn io_error(e: &ConnectionError) -> Option<&std::io::Error> {
    match e {
        ConnectionError::Io(io)
        | ConnectionError::Tls(TlsError::Io(io))
        | ConnectionError::MqttState(StateError::Io(io))
        | ConnectionError::MqttState(StateError::Deserialization(mqttbytes::Error::Io(io))) => {
            Some(io)
        }
        _ => None,
    }
}

/// The rustls error inside a connection error. tokio-rustls wraps it in an `io::Error`,
/// whose `source()` skips the wrapped error itself, so it is unwrapped with `get_ref`.
fn rustls_error(e: &ConnectionError) -> Option<&rustls::Error> {
    if let ConnectionError::Tls(TlsError::TLS(t)) = e {
        return Some(t);
    }
    let mut cur: &(dyn std::error::Error + 'static) = io_error(e)?.get_ref()?;
    loop {
        if let Some(t) = cur.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        cur = match cur.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref()?,
            None => cur.source()?,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn a_rustls_error_inside_io_errors_is_tls() {
        let inner = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let f = ConnectionFailure::of(&ConnectionError::Tls(TlsError::Io(inner)));
        assert_eq!(f.kind, FailureKind::Tls);
        assert!(f.message.starts_with("TLS: "), "{}", f.message);
        assert!(f.message.contains("UnknownIssuer"), "{}", f.message);
        assert!(f.message.contains("mqtt.tls.ca_cert"), "{}", f.message);

        // An alert from the broker while reading the CONNACK.
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired),
        );
        let f = ConnectionFailure::of(&ConnectionError::MqttState(StateError::Deserialization(
            mqttbytes::Error::Io(alert),
        )));
        assert_eq!(f.kind, FailureKind::Tls);
        assert!(f.message.contains("CertificateExpired"), "{}", f.message);
        assert!(f.message.contains("client certificate"), "{}", f.message);
    }

    #[test]
    fn a_refused_login_names_the_credentials() {
        let f = ConnectionFailure::of(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword,
        ));
        assert_eq!(f.kind, FailureKind::Refused);
        assert!(f.message.contains("BadUserNamePassword"), "{}", f.message);
        assert!(f.message.contains("mqtt.username"), "{}", f.message);
    }

    #[test]
    fn a_plain_io_error_is_the_network() {
        let e = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let f = ConnectionFailure::of(&ConnectionError::Io(e));
        assert_eq!(f.kind, FailureKind::Network);
        assert_eq!(f.message, "network: connection refused");
    }
}
