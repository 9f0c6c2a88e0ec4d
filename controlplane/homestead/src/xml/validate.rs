//! Checks provisioned XML against the shapes of TS 29.228 Annex E (CxDataType.xsd) that
//! Sprout relies on, so a malformed profile is refused at provisioning time with the reason
//! instead of failing calls later.

use roxmltree::{Document, Node};

/// Why a document was refused; the message names the element at fault.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("not well-formed XML: {0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> XmlError {
    XmlError::Invalid(message.into())
}

/// Elements that hold text (or nothing): one with child elements would lose its value
/// when the profile is printed for Sprout.
const LEAVES: [&str; 21] = [
    "Identity",
    "BarringIndication",
    "IdentityType",
    "WildcardedIMPU",
    "DisplayName",
    "Priority",
    "ConditionTypeCNF",
    "ConditionNegated",
    "Group",
    "Method",
    "RequestURI",
    "SessionCase",
    "Header",
    "Content",
    "Line",
    "ServerName",
    "DefaultHandling",
    "ServiceInfo",
    "ProfilePartIndicator",
    "SharedIFCSetID",
    "RegistrationType",
];

fn parse(text: &str) -> Result<Document<'_>, XmlError> {
    let doc = Document::parse(text).map_err(|e| XmlError::Malformed(e.to_string()))?;
    for node in doc.descendants().filter(Node::is_element) {
        let name = node.tag_name().name();
        if LEAVES.contains(&name) && node.first_element_child().is_some() {
            return Err(invalid(format!(
                "<{name}> may hold only text, not elements"
            )));
        }
    }
    Ok(doc)
}

/// Refuses a second occurrence of elements TS 29.228 allows once.
fn check_once(node: Node<'_, '_>, names: &[&str]) -> Result<(), XmlError> {
    for name in names {
        if children(node)
            .filter(|c| c.tag_name().name() == *name)
            .count()
            > 1
        {
            return Err(invalid(format!(
                "<{}> may hold one <{name}> only",
                node.tag_name().name()
            )));
        }
    }
    Ok(())
}

fn children<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    children(node).find(|c| c.tag_name().name() == name)
}

fn text_of<'a>(node: Node<'a, '_>) -> &'a str {
    node.text().unwrap_or("").trim()
}

fn expect_root(doc: &Document<'_>, name: &str) -> Result<(), XmlError> {
    let root = doc.root_element().tag_name().name();
    if root == name {
        Ok(())
    } else {
        Err(invalid(format!(
            "root element must be <{name}>, found <{root}>"
        )))
    }
}

fn check_only(node: Node<'_, '_>, allowed: &[&str]) -> Result<(), XmlError> {
    for c in children(node) {
        let name = c.tag_name().name();
        if !allowed.contains(&name) {
            return Err(invalid(format!(
                "<{}> may not contain <{name}> (allowed: {})",
                node.tag_name().name(),
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn check_enum(node: Node<'_, '_>, name: &str, max: u32, required: bool) -> Result<(), XmlError> {
    let parent = node.tag_name().name();
    match child(node, name) {
        None if required => Err(invalid(format!("<{parent}> needs a <{name}>"))),
        None => Ok(()),
        Some(c) => match text_of(c).parse::<u32>() {
            Ok(v) if v <= max => Ok(()),
            _ => Err(invalid(format!(
                "<{name}> in <{parent}> must be an integer from 0 to {max}, found {:?}",
                text_of(c)
            ))),
        },
    }
}

fn is_uri(text: &str) -> bool {
    ["sip:", "sips:", "tel:"]
        .iter()
        .any(|s| text.len() > s.len() && text[..s.len()].eq_ignore_ascii_case(s))
}

/// Validates a `<PublicIdentity>` and returns its `<Identity>`.
pub fn validate_public_identity(text: &str) -> Result<String, XmlError> {
    let doc = parse(text)?;
    expect_root(&doc, "PublicIdentity")?;
    let root = doc.root_element();
    let fields = ["BarringIndication", "Identity", "Extension", "DisplayName"];
    check_only(root, &fields)?;
    check_once(root, &fields)?;
    let identity = child(root, "Identity")
        .map(text_of)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("<PublicIdentity> needs a non-empty <Identity>"))?;
    if !is_uri(identity) {
        return Err(invalid(format!(
            "<Identity> must be a sip:, sips: or tel: URI, found {identity:?}"
        )));
    }
    check_enum(root, "BarringIndication", 1, false)?;
    if let Some(ext) = child(root, "Extension") {
        check_enum(ext, "IdentityType", 4, false)?;
    }
    Ok(identity.to_owned())
}

/// Validates a `<ServiceProfile>` holding initial filter criteria (the body of
/// `PUT .../filter_criteria`).
pub fn validate_filter_criteria(text: &str) -> Result<(), XmlError> {
    let doc = parse(text)?;
    expect_root(&doc, "ServiceProfile")?;
    let root = doc.root_element();
    check_only(
        root,
        &[
            "InitialFilterCriteria",
            "CoreNetworkServicesAuthorization",
            "Extension",
            "SharedIFCSetID",
        ],
    )?;
    for ifc in children(root).filter(|c| c.tag_name().name() == "InitialFilterCriteria") {
        validate_ifc(ifc)?;
    }
    Ok(())
}

fn validate_ifc(ifc: Node<'_, '_>) -> Result<(), XmlError> {
    // Clearwater writes `<InitialFilterCriteria></InitialFilterCriteria>` for "no iFCs".
    if children(ifc).next().is_none() {
        return Ok(());
    }
    check_only(
        ifc,
        &[
            "Priority",
            "TriggerPoint",
            "ApplicationServer",
            "ProfilePartIndicator",
            "Extension",
        ],
    )?;
    check_once(
        ifc,
        &[
            "Priority",
            "TriggerPoint",
            "ApplicationServer",
            "ProfilePartIndicator",
        ],
    )?;
    let priority = child(ifc, "Priority").map(text_of);
    if priority.and_then(|p| p.parse::<i32>().ok()).is_none() {
        return Err(invalid(format!(
            "<InitialFilterCriteria> needs an integer <Priority>, found {:?}",
            priority.unwrap_or("")
        )));
    }
    check_enum(ifc, "ProfilePartIndicator", 1, false)?;
    if let Some(tp) = child(ifc, "TriggerPoint") {
        check_only(tp, &["ConditionTypeCNF", "SPT", "Extension"])?;
        check_once(tp, &["ConditionTypeCNF"])?;
        if child(tp, "SPT").is_none() {
            return Err(invalid("<TriggerPoint> needs at least one <SPT>"));
        }
        check_enum(tp, "ConditionTypeCNF", 1, true)?;
        for spt in children(tp).filter(|c| c.tag_name().name() == "SPT") {
            validate_spt(spt)?;
        }
    }
    let server = child(ifc, "ApplicationServer")
        .ok_or_else(|| invalid("<InitialFilterCriteria> needs an <ApplicationServer>"))?;
    check_only(
        server,
        &["ServerName", "DefaultHandling", "ServiceInfo", "Extension"],
    )?;
    check_once(server, &["ServerName", "DefaultHandling", "ServiceInfo"])?;
    let name = child(server, "ServerName").map(text_of).unwrap_or("");
    if !is_uri(name) {
        return Err(invalid(format!(
            "<ApplicationServer> needs a <ServerName> with a SIP URI, found {name:?}"
        )));
    }
    check_enum(server, "DefaultHandling", 1, false)
}

fn validate_spt(spt: Node<'_, '_>) -> Result<(), XmlError> {
    const CONDITIONS: [&str; 5] = [
        "RequestURI",
        "Method",
        "SIPHeader",
        "SessionCase",
        "SessionDescription",
    ];
    check_only(
        spt,
        &[
            "ConditionNegated",
            "Group",
            "Extension",
            "RequestURI",
            "Method",
            "SIPHeader",
            "SessionCase",
            "SessionDescription",
        ],
    )?;
    check_enum(spt, "ConditionNegated", 1, false)?;
    if child(spt, "Group").is_none() {
        return Err(invalid("<SPT> needs at least one <Group>"));
    }
    for group in children(spt).filter(|c| c.tag_name().name() == "Group") {
        if text_of(group).parse::<u32>().is_err() {
            return Err(invalid(format!(
                "<Group> must be an integer, found {:?}",
                text_of(group)
            )));
        }
    }
    let conditions: Vec<_> = children(spt)
        .filter(|c| CONDITIONS.contains(&c.tag_name().name()))
        .collect();
    let [condition] = conditions[..] else {
        return Err(invalid(format!(
            "<SPT> needs exactly one of <{}>, found {}",
            CONDITIONS.join(">, <"),
            conditions.len()
        )));
    };
    match condition.tag_name().name() {
        "SessionCase" => check_enum(spt, "SessionCase", 4, true),
        "SIPHeader" if child(condition, "Header").is_none() => {
            Err(invalid("<SIPHeader> needs a <Header>"))
        }
        "SessionDescription" if child(condition, "Line").is_none() => {
            Err(invalid("<SessionDescription> needs a <Line>"))
        }
        _ if children(condition).next().is_none() && text_of(condition).is_empty() => Err(invalid(
            format!("<{}> is empty", condition.tag_name().name()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IFC: &str = "<ServiceProfile><InitialFilterCriteria><Priority>1</Priority>\
        <TriggerPoint><ConditionTypeCNF>0</ConditionTypeCNF><SPT><ConditionNegated>0</ConditionNegated>\
        <Group>0</Group><Method>INVITE</Method><Extension/></SPT></TriggerPoint>\
        <ApplicationServer><ServerName>sip:mmtel.example.com</ServerName>\
        <DefaultHandling>0</DefaultHandling></ApplicationServer></InitialFilterCriteria></ServiceProfile>";

    #[test]
    fn accepts_clearwater_shapes() {
        assert_eq!(
            validate_public_identity(
                "<PublicIdentity><BarringIndication>1</BarringIndication><Identity>sip:alice@example.com</Identity>\
                 <Extension><IdentityType>0</IdentityType></Extension></PublicIdentity>"
            ),
            Ok("sip:alice@example.com".into())
        );
        assert_eq!(validate_filter_criteria(IFC), Ok(()));
        assert_eq!(
            validate_filter_criteria(
                "<ServiceProfile><InitialFilterCriteria></InitialFilterCriteria></ServiceProfile>"
            ),
            Ok(())
        );
    }

    #[test]
    fn refuses_with_the_reason() {
        let cases = [
            (
                "<PublicIdentity><Identity>sip:a@b</Identity>",
                "not well-formed",
            ),
            (
                "<Public><Identity>sip:a@b</Identity></Public>",
                "root element must be <PublicIdentity>",
            ),
            (
                "<PublicIdentity></PublicIdentity>",
                "needs a non-empty <Identity>",
            ),
            (
                "<PublicIdentity><Identity>alice</Identity></PublicIdentity>",
                "must be a sip:",
            ),
            (
                "<PublicIdentity><Identity>sip:a@b</Identity><BarringIndication>7</BarringIndication></PublicIdentity>",
                "from 0 to 1",
            ),
        ];
        for (xml, reason) in cases {
            let e = validate_public_identity(xml).unwrap_err().to_string();
            assert!(e.contains(reason), "{xml}: {e}");
        }
        let ifc_cases = [
            (
                IFC.replace("<Priority>1</Priority>", ""),
                "integer <Priority>",
            ),
            (IFC.replace("<Method>INVITE</Method>", ""), "exactly one of"),
            (
                IFC.replace("sip:mmtel.example.com", "mmtel"),
                "<ServerName> with a SIP URI",
            ),
            (
                IFC.replace("<ConditionTypeCNF>0</ConditionTypeCNF>", ""),
                "needs a <ConditionTypeCNF>",
            ),
            (IFC.replace("<Group>0</Group>", ""), "at least one <Group>"),
            (
                IFC.replace("<Method>INVITE</Method>", "<SessionCase>9</SessionCase>"),
                "from 0 to 4",
            ),
            (
                IFC.replace("<Priority>1</Priority>", "<Priority>1<Extension/></Priority>"),
                "<Priority> may hold only text",
            ),
            (
                IFC.replace("<Priority>1</Priority>", "<Priority>1</Priority><Priority>2</Priority>"),
                "one <Priority> only",
            ),
            (
                IFC.replace(
                    "<SPT><ConditionNegated>0</ConditionNegated><Group>0</Group><Method>INVITE</Method><Extension/></SPT>",
                    "",
                ),
                "needs at least one <SPT>",
            ),
            (
                IFC.replace("ServiceProfile>", "IMSSubscription>"),
                "root element must be <ServiceProfile>",
            ),
        ];
        for (xml, reason) in ifc_cases {
            let e = validate_filter_criteria(&xml).unwrap_err().to_string();
            assert!(e.contains(reason), "{xml}: {e}");
        }
    }
}
