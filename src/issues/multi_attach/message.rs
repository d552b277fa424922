//! The FailedAttachVolume event's "Multi-Attach error" message, in its four
//! forms (shared/FACTS.md): exclusively attached; used by pod(s) A, B; used
//! by pod(s) A and N pod(s) in different namespaces; used by N pod(s) in
//! different namespaces.

/// The message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiAttachMessage {
    pub volume: String,
    pub form: &'static str,
    pub pods: Vec<String>,
    pub other_namespaces: u32,
}

pub fn parse_message(message: &str) -> Option<MultiAttachMessage> {
    let rest = message
        .trim()
        .strip_prefix("Multi-Attach error for volume \"")?;
    let (volume, rest) = rest.split_once('"')?;
    let rest = rest.trim_start().strip_prefix("Volume is already ")?.trim();
    let count_of = |s: &str| -> Option<u32> {
        s.trim()
            .strip_suffix("pod(s) in different namespaces")
            .and_then(|n| n.trim().parse().ok())
    };
    let (form, pods, other) = if rest.starts_with("exclusively attached") {
        ("exclusively-attached", vec![], 0)
    } else if let Some(list) = rest.strip_prefix("used by pod(s) ") {
        match list.rsplit_once(" and ") {
            Some((names, tail)) if count_of(tail).is_some() => (
                "used-by-pods-and-other-namespaces",
                split_names(names),
                count_of(tail).unwrap_or(0),
            ),
            _ => ("used-by-pods", split_names(list), 0),
        }
    } else if let Some(tail) = rest.strip_prefix("used by ") {
        ("used-in-other-namespaces", vec![], count_of(tail)?)
    } else {
        return None;
    };
    Some(MultiAttachMessage {
        volume: volume.to_string(),
        form,
        pods,
        other_namespaces: other,
    })
}

fn split_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_four_message_forms() {
        let pv = "pvc-0b1c";
        let m = parse_message(&format!(
            "Multi-Attach error for volume \"{pv}\" Volume is already exclusively attached to one node and can't be attached to another"
        ))
        .unwrap();
        assert_eq!((m.volume.as_str(), m.form), (pv, "exclusively-attached"));
        let m = parse_message(&format!(
            "Multi-Attach error for volume \"{pv}\" Volume is already used by pod(s) harbor-registry-a-1, harbor-registry-a-2"
        ))
        .unwrap();
        assert_eq!(m.pods, vec!["harbor-registry-a-1", "harbor-registry-a-2"]);
        assert_eq!(m.form, "used-by-pods");
        let m = parse_message(&format!(
            "Multi-Attach error for volume \"{pv}\" Volume is already used by pod(s) harbor-registry-a-1 and 2 pod(s) in different namespaces"
        ))
        .unwrap();
        assert_eq!(
            (m.pods.clone(), m.other_namespaces, m.form),
            (
                vec!["harbor-registry-a-1".to_string()],
                2,
                "used-by-pods-and-other-namespaces"
            )
        );
        let m = parse_message(&format!(
            "Multi-Attach error for volume \"{pv}\" Volume is already used by 3 pod(s) in different namespaces"
        ))
        .unwrap();
        assert_eq!(
            (m.other_namespaces, m.form),
            (3, "used-in-other-namespaces")
        );
        assert!(parse_message("AttachVolume.Attach failed for volume \"x\"").is_none());
    }
}
