//! Who berth runs as, read from the files the C library reads: `/proc/self/status` for the ids the kernel checks
//! (effective uid and gid, supplementary groups), `/etc/passwd` for the user's name, `/etc/group` for group names
//! and members. Pure functions over the files' text; [`super::machine`] reads the files.

/// The user this process acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Login name (`/etc/passwd`), else `$USER`, else the uid.
    pub name: String,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Supplementary groups of this process (what the kernel checks, not what `/etc/group` says now).
    pub groups: Vec<u32>,
}

impl Identity {
    /// Whether this process is root.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the kernel counts this process as a member of group `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The effective uid, effective gid and supplementary groups in `/proc/self/status` text.
pub fn ids_from_proc_status(text: &str) -> Option<(u32, u32, Vec<u32>)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::split_whitespace)
    };
    // `Uid:` and `Gid:` list real, effective, saved and filesystem ids.
    let effective = |name: &str| field(name)?.nth(1)?.parse::<u32>().ok();
    let groups = field("Groups")?.filter_map(|g| g.parse().ok()).collect();
    Some((effective("Uid")?, effective("Gid")?, groups))
}

/// The name of user `uid` in `/etc/passwd` text.
pub fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Users listed as members (not those whose primary group it is).
    pub members: Vec<String>,
}

/// The entries of `/etc/group` text; malformed lines are left out.
pub fn parse_groups(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _, gid, members] = fields[..] else {
                return None;
            };
            Some(Group {
                name: name.to_string(),
                gid: gid.parse().ok()?,
                members: members
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// The group with id `gid`.
pub fn group_by_id(groups: &[Group], gid: u32) -> Option<&Group> {
    groups.iter().find(|g| g.gid == gid)
}

/// The user and group databases, for naming the owners of files in messages.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// `/etc/passwd` text.
    pub passwd: String,
    /// `/etc/group` entries.
    pub groups: Vec<Group>,
}

impl Accounts {
    /// User `uid`'s name, or the number.
    pub fn user(&self, uid: u32) -> String {
        user_name(&self.passwd, uid).unwrap_or_else(|| uid.to_string())
    }

    /// Group `gid`'s name, or the number.
    pub fn group(&self, gid: u32) -> String {
        group_by_id(&self.groups, gid).map_or_else(|| gid.to_string(), |g| g.name.clone())
    }

    /// Whether `/etc/group` lists `user` as a member of group `gid`.
    pub fn lists_member(&self, gid: u32, user: &str) -> bool {
        group_by_id(&self.groups, gid).is_some_and(|g| g.members.iter().any(|m| m == user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t4242\nUid:\t1000\t1001\t1001\t1001\n\
                          Gid:\t1000\t1001\t1001\t1001\nFDSize:\t64\nGroups:\t27 106 1001 \nNStgid:\t4242\n";

    #[test]
    fn the_effective_ids_and_groups_are_read_from_proc_status() {
        assert_eq!(
            ids_from_proc_status(STATUS),
            Some((1001, 1001, vec![27, 106, 1001]))
        );
        let no_groups = STATUS.replace("Groups:\t27 106 1001 \n", "Groups:\t\n");
        assert_eq!(ids_from_proc_status(&no_groups), Some((1001, 1001, vec![])));
        assert_eq!(ids_from_proc_status("Name:\tcat\n"), None);
    }

    #[test]
    fn names_and_groups_come_from_passwd_and_group() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nberth-rootless:x:1001:1001:berth:/home/berth-rootless:/bin/bash\n";
        assert_eq!(user_name(passwd, 1001).as_deref(), Some("berth-rootless"));
        assert_eq!(user_name(passwd, 1002), None);
        let groups = parse_groups("root:x:0:\ndocker:x:106:alice,bob\nbroken line\n");
        assert_eq!(groups.len(), 2);
        let docker = group_by_id(&groups, 106).expect("docker");
        assert_eq!(
            (docker.name.as_str(), docker.members.clone()),
            ("docker", vec!["alice".to_string(), "bob".to_string()])
        );
        assert!(group_by_id(&groups, 0).expect("root").members.is_empty());
    }
}
