//! Who a step runs as: `USER` and `COPY --chown` specs resolved against the image's own `/etc/passwd` and
//! `/etc/group`, read through [`RootfsView`] (so inside the image, whatever links it holds).

use super::RootfsView;

/// A user as a process runs: ids and home folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: String,
    pub(crate) additional_gids: Vec<u32>,
}

/// Resolves `spec` (`name`, `uid`, `name:group`, `uid:gid`, empty for root) against the image's user database.
pub(crate) fn resolve_user(view: &RootfsView, spec: &str) -> Result<User, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // no USER at all means root, even in an image without a user database (as Docker runs it)
    let unset = user.is_empty();
    let user = if unset { "root" } else { user };
    let passwd = view
        .read("/etc/passwd")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let groups = view
        .read("/etc/group")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    // name:password:uid:gid:gecos:home:shell
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, mut gid, home, name) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| format!("bad uid for {user} in /etc/passwd"))?,
            f[3].parse()
                .map_err(|_| format!("bad gid for {user} in /etc/passwd"))?,
            f[5].to_string(),
            Some(f[0].to_string()),
        ),
        (None, Ok(uid)) => (uid, uid, "/".to_string(), None),
        (None, Err(_)) if unset => (0, 0, "/root".to_string(), None),
        (None, Err(_)) => return Err(format!("no user `{user}` in the image's /etc/passwd")),
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(g) => g,
            Err(_) => groups
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("no group `{group}` in the image's /etc/group"))?,
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = &name {
        for f in groups.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !additional_gids.contains(&g) {
                        additional_gids.push(g);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        home,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn view_of(dirs: &[&Path]) -> RootfsView {
        RootfsView::of_layers(dirs.iter().map(|d| d.to_path_buf()).collect(), None)
    }

    #[test]
    fn users_resolve_by_name_and_id() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/bash\n",
        )
        .expect("passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:app\napp:x:1000:\n",
        )
        .expect("group");
        let view = view_of(&[dir.path()]);
        let app = resolve_user(&view, "app").expect("app");
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.additional_gids, vec![50]);
        assert_eq!(resolve_user(&view, "nobody").map(|u| u.uid), Ok(65534));
        assert_eq!(
            resolve_user(&view, "123:staff").map(|u| (u.uid, u.gid)),
            Ok((123, 50))
        );
        assert!(resolve_user(&view, "ghost").is_err());
        let empty = tempfile::tempdir().expect("temp dir");
        let bare = view_of(&[empty.path()]);
        assert_eq!(
            resolve_user(&bare, "").map(|u| (u.uid, u.home)),
            Ok((0, "/root".into()))
        );
        assert!(resolve_user(&bare, "root").is_err());
    }
}
