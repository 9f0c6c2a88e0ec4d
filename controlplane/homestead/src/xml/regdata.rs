//! The `ClearwaterRegData` document, laid out as Clearwater's Homestead prints it: no XML
//! declaration, one element per line, tab indentation, a blank line at the end, namespace
//! prefixes dropped. Elements follow TS 29.228 Annex E order.

use roxmltree::{Document, Node};

use super::escape_into as escape;
use crate::model::{ChargingAddresses, RegistrationSet, RegistrationState};

/// Everything a reg-data answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegDataDocument<'a> {
    pub state: RegistrationState,
    /// Only for PUT with reqtype `reg` or `call`.
    pub previous: Option<RegistrationState>,
    /// The `<IMSSubscription>` element, rendered by [`ims_subscription`] at depth 1.
    pub ims_subscription: Option<&'a str>,
    pub charging: &'a ChargingAddresses,
}

impl RegDataDocument<'_> {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256 + self.ims_subscription.map_or(0, str::len));
        out.push_str("<ClearwaterRegData>\n");
        leaf(&mut out, 1, "RegistrationState", self.state.as_str());
        if let Some(previous) = self.previous {
            leaf(&mut out, 1, "PreviousRegistrationState", previous.as_str());
        }
        if let Some(subscription) = self.ims_subscription {
            out.push_str(subscription);
        }
        let charging = self.charging;
        if !charging.ccfs.is_empty() || !charging.ecfs.is_empty() {
            out.push_str("\t<ChargingAddresses>\n");
            for (tag, addresses) in [("CCF", &charging.ccfs), ("ECF", &charging.ecfs)] {
                for (i, address) in addresses.iter().enumerate() {
                    out.push_str("\t\t<");
                    out.push_str(tag);
                    out.push_str(" priority=\"");
                    out.push_str(&(i + 1).to_string());
                    out.push_str("\">");
                    escape(address, &mut out);
                    out.push_str("</");
                    out.push_str(tag);
                    out.push_str(">\n");
                }
            }
            out.push_str("\t</ChargingAddresses>\n");
        }
        out.push_str("</ClearwaterRegData>\n\n");
        out
    }
}

/// Renders the TS 29.228 `<IMSSubscription>` of an implicit registration set at `depth`:
/// the private identity, then each service profile with its public identities followed by
/// its initial filter criteria. The stored fragments were validated when provisioned; one
/// that no longer parses is skipped rather than failing every registration.
pub fn ims_subscription(private_id: &str, set: &RegistrationSet, depth: usize) -> String {
    let mut out = String::with_capacity(512);
    open(&mut out, depth, "IMSSubscription");
    leaf(&mut out, depth + 1, "PrivateID", private_id);
    for profile in &set.service_profiles {
        open(&mut out, depth + 1, "ServiceProfile");
        for public in &profile.public_ids {
            match Document::parse(&public.xml) {
                Ok(doc) => element(&mut out, depth + 2, doc.root_element()),
                Err(e) => {
                    tracing::error!(impu = %public.impu, error = %e, "stored public identity XML does not parse; left out")
                }
            }
        }
        let criteria = Document::parse(&profile.filter_criteria_xml);
        if let Err(e) = &criteria {
            tracing::error!(profile = %profile.id, error = %e, "stored filter criteria do not parse; left out");
        }
        if let Ok(doc) = criteria {
            for c in doc.root_element().children().filter(Node::is_element) {
                if c.tag_name().name() == "InitialFilterCriteria"
                    && c.first_element_child().is_none()
                {
                    continue;
                }
                element(&mut out, depth + 2, c);
            }
        }
        close(&mut out, depth + 1, "ServiceProfile");
    }
    close(&mut out, depth, "IMSSubscription");
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push('\t');
    }
}

fn open(out: &mut String, depth: usize, name: &str) {
    indent(out, depth);
    out.push('<');
    out.push_str(name);
    out.push_str(">\n");
}

fn close(out: &mut String, depth: usize, name: &str) {
    indent(out, depth);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

fn leaf(out: &mut String, depth: usize, name: &str, text: &str) {
    indent(out, depth);
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape(text, out);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

fn element(out: &mut String, depth: usize, node: Node<'_, '_>) {
    let name = node.tag_name().name();
    indent(out, depth);
    out.push('<');
    out.push_str(name);
    for attribute in node.attributes() {
        out.push(' ');
        out.push_str(attribute.name());
        out.push_str("=\"");
        escape(attribute.value(), out);
        out.push('"');
    }
    // Leaf text is printed as provisioned: whitespace inside a value can matter to a match.
    let text = node.text().unwrap_or("");
    if node.first_element_child().is_none() {
        if text.trim().is_empty() {
            out.push_str("/>\n");
        } else {
            out.push('>');
            escape(text, out);
            out.push_str("</");
            out.push_str(name);
            out.push_str(">\n");
        }
        return;
    }
    out.push_str(">\n");
    for c in node.children().filter(Node::is_element) {
        element(out, depth + 1, c);
    }
    close(out, depth, name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PublicIdentity, ServiceProfile};
    use uuid::Uuid;

    #[test]
    fn renders_as_clearwater_prints_it() {
        let set = RegistrationSet {
            id: Uuid::nil(),
            private_ids: vec!["alice@example.com".into()],
            service_profiles: vec![ServiceProfile {
                id: Uuid::nil(),
                filter_criteria_xml: "<ServiceProfile><InitialFilterCriteria></InitialFilterCriteria></ServiceProfile>".into(),
                public_ids: vec![PublicIdentity {
                    impu: "sip:alice@example.com".into(),
                    xml: "<PublicIdentity xmlns:x=\"urn:x\">\n  <Identity>sip:alice@example.com</Identity>\n</PublicIdentity>".into(),
                }],
            }],
        };
        let subscription = ims_subscription("alice@example.com", &set, 1);
        let charging = ChargingAddresses {
            ccfs: vec!["ccf1".into()],
            ecfs: vec!["ecf1".into()],
        };
        let doc = RegDataDocument {
            state: RegistrationState::Registered,
            previous: None,
            ims_subscription: Some(&subscription),
            charging: &charging,
        };
        assert_eq!(
            doc.render(),
            "<ClearwaterRegData>\n\t<RegistrationState>REGISTERED</RegistrationState>\n\
             \t<IMSSubscription>\n\t\t<PrivateID>alice@example.com</PrivateID>\n\t\t<ServiceProfile>\n\
             \t\t\t<PublicIdentity>\n\t\t\t\t<Identity>sip:alice@example.com</Identity>\n\t\t\t</PublicIdentity>\n\
             \t\t</ServiceProfile>\n\t</IMSSubscription>\n\t<ChargingAddresses>\n\
             \t\t<CCF priority=\"1\">ccf1</CCF>\n\t\t<ECF priority=\"1\">ecf1</ECF>\n\t</ChargingAddresses>\n\
             </ClearwaterRegData>\n\n"
        );
        let empty = ChargingAddresses::default();
        let bare = RegDataDocument {
            state: RegistrationState::NotRegistered,
            previous: Some(RegistrationState::NotRegistered),
            ims_subscription: None,
            charging: &empty,
        };
        assert_eq!(
            bare.render(),
            "<ClearwaterRegData>\n\t<RegistrationState>NOT_REGISTERED</RegistrationState>\n\
             \t<PreviousRegistrationState>NOT_REGISTERED</PreviousRegistrationState>\n</ClearwaterRegData>\n\n"
        );
    }
}
