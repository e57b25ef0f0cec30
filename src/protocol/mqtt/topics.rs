//! The topic scheme (docs/mqtt.md):
//!
//! - `{prefix}/telemetry/{publisher}`: telemetry in, one message or a gateway's array.
//!   The publisher segment is the device or gateway that published; the device a reading
//!   belongs to is the payload's `device_id`.
//! - `{prefix}/command/{device}`: commands out, QoS 1, retained, so a device that
//!   (re)connects receives the state the engine last asked of it.
//! - `{prefix}/ack/{device}`: the device's acknowledgements, correlated by `command_id`.

/// The topics under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

/// What an incoming topic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    Telemetry { publisher: &'a str },
    Ack { device: &'a str },
    Other,
}

impl Topics {
    pub fn new(prefix: &str) -> Topics {
        Topics {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The subscription filter for telemetry.
    pub fn telemetry_filter(&self) -> String {
        format!("{}/telemetry/+", self.prefix)
    }

    /// The subscription filter for acknowledgements.
    pub fn ack_filter(&self) -> String {
        format!("{}/ack/+", self.prefix)
    }

    pub fn telemetry(&self, publisher: &str) -> String {
        format!("{}/telemetry/{publisher}", self.prefix)
    }

    pub fn command(&self, device: &str) -> String {
        format!("{}/command/{device}", self.prefix)
    }

    pub fn ack(&self, device: &str) -> String {
        format!("{}/ack/{device}", self.prefix)
    }

    /// Classifies a topic a message arrived on.
    pub fn classify<'a>(&self, topic: &'a str) -> Incoming<'a> {
        let Some(rest) = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Incoming::Other;
        };
        match rest.split_once('/') {
            Some(("telemetry", p)) if !p.is_empty() && !p.contains('/') => {
                Incoming::Telemetry { publisher: p }
            }
            Some(("ack", d)) if !d.is_empty() && !d.contains('/') => Incoming::Ack { device: d },
            _ => Incoming::Other,
        }
    }
}

/// Whether `id` can be a topic segment: no separators or wildcards.
pub fn valid_segment(id: &str) -> bool {
    !id.is_empty() && !id.contains(['/', '+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_topics() {
        let t = Topics::new("fleet/");
        assert_eq!(t.telemetry_filter(), "fleet/telemetry/+");
        assert_eq!(
            t.classify("fleet/telemetry/gw-1"),
            Incoming::Telemetry { publisher: "gw-1" }
        );
        assert_eq!(
            t.classify("fleet/ack/inv-9"),
            Incoming::Ack { device: "inv-9" }
        );
        assert_eq!(t.classify("fleet/command/inv-9"), Incoming::Other);
        assert_eq!(t.classify("fleetx/telemetry/a"), Incoming::Other);
        assert_eq!(t.classify("fleet/telemetry/a/b"), Incoming::Other);
        assert!(valid_segment("inv-9") && !valid_segment("a/b") && !valid_segment("#"));
    }
}
