//! The XML Homestead reads and writes: validation of provisioned `<PublicIdentity>` and
//! `<ServiceProfile>` documents against the TS 29.228 CxData shapes, and the
//! `ClearwaterRegData` document of the reg-data API.

mod regdata;
mod validate;

pub use regdata::{RegDataDocument, ims_subscription};
pub use validate::{XmlError, validate_filter_criteria, validate_public_identity};

/// Escapes text and attribute values for XML.
pub fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}
