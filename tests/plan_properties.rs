//! Property tests of the planner and executor over generated configs, on a
//! real file store: applying a plan and planning again gives no steps, from
//! any starting state; and no rendering of any plan contains a generated secret.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use roster::apply::{ApplyOptions, apply};
use roster::model::{
    AccessLevel, Argon2Params, AssignmentSpec, Authentication, CredentialSpec, Desired, GroupSpec,
    RoleSpec, Settings, Subject, UserClass, UserSpec,
};
use roster::plan::{PlanOptions, plan, render};
use roster::secret::EmittedSecret;
use roster::store::{LockOwner, StateStore, file::FileStore};

fn names(prefix: &'static str, max: usize) -> impl Strategy<Value = BTreeSet<String>> {
    proptest::collection::btree_set(0..12usize, 0..max)
        .prop_map(move |s| s.into_iter().map(|i| format!("{prefix}-{i}")).collect())
}

fn pick(from: &[String], mask: u16) -> BTreeSet<String> {
    from.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << (i % 16)) != 0)
        .map(|(_, n)| n.clone())
        .collect()
}

prop_compose! {
    fn desired()(
        roles in names("role", 5),
        groups in names("group", 4),
        users in names("user", 7),
        seeds in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<bool>(), any::<bool>(), any::<bool>(), 0u32..3, any::<bool>(), 0u8..4), 7),
        assignment_seeds in proptest::collection::vec((any::<u16>(), any::<u16>()), 3),
    ) -> Desired {
        let role_list: Vec<String> = roles.iter().cloned().collect();
        let group_list: Vec<String> = groups.iter().cloned().collect();
        let mut d = Desired {
            settings: Settings { argon2: Argon2Params { memory_kib: 8192, iterations: 1, parallelism: 1 }, max_removal_fraction: 1.0, ..Settings::default() },
            ..Desired::default()
        };
        for (i, r) in role_list.iter().enumerate() {
            d.roles.insert(r.clone(), RoleSpec { description: None, permissions: [format!("area{i}.read")].into() });
        }
        for (i, g) in group_list.iter().enumerate() {
            let mask = seeds.get(i).map(|s| s.0).unwrap_or(0);
            d.groups.insert(g.clone(), GroupSpec { roles: pick(&role_list, mask), companies: ["ACME".to_string()].into(), ..GroupSpec::default() });
        }
        for (i, u) in users.iter().enumerate() {
            let (gm, rm, active, password, token, rotation, sso, level) = seeds[i % seeds.len()];
            let level = [AccessLevel::None, AccessLevel::Read, AccessLevel::Write, AccessLevel::Full][level as usize];
            d.users.insert(u.clone(), UserSpec {
                display_name: format!("User {i}"),
                first_name: None,
                last_name: None,
                email: Some(format!("{u}@acme.example")),
                active,
                class: UserClass::Regular,
                authentication: if sso { Authentication::Sso } else { Authentication::Local },
                identity_provider: None,
                groups: pick(&group_list, gm),
                roles: pick(&role_list, rm),
                set_rights: BTreeMap::from([("personal".to_string(), level)]),
                credentials: CredentialSpec { password: password && !sso, token, rotation },
                protected: false,
                targets: Default::default(),
                target_attrs: Default::default(),
            });
        }
        let user_list: Vec<String> = users.iter().cloned().collect();
        for (rm, um) in assignment_seeds {
            if role_list.is_empty() || user_list.is_empty() { break; }
            let a = AssignmentSpec {
                role: role_list[rm as usize % role_list.len()].clone(),
                subject: Subject::User(user_list[um as usize % user_list.len()].clone()),
                positions: ["CLERK".to_string()].into(),
                companies: BTreeSet::new(),
                pay_groups: BTreeSet::new(),
            };
            d.assignments.insert(a.id(), a);
        }
        d
    }
}

fn apply_desired(store: &FileStore, d: &Desired, emitted: &mut Vec<String>) {
    let snapshot = store.read().expect("read");
    let p = plan(
        d,
        &snapshot,
        PlanOptions {
            allow_mass_removal: true,
        },
    )
    .expect("plan");
    let options = ApplyOptions {
        owner: LockOwner {
            pid: std::process::id(),
            host: "test".into(),
            since: "2026-11-22T00:00:00Z".into(),
        },
        lock_timeout: Duration::ZERO,
        now: "2026-11-22T00:00:00Z".into(),
        audit: None,
    };
    let mut emit = |s: &[EmittedSecret]| {
        emitted.extend(s.iter().map(|e| e.value.expose().to_string()));
        Ok(())
    };
    apply(store, &p, &options, &mut emit).expect("apply");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn apply_then_plan_has_no_steps(first in desired(), second in desired()) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("state.json"));
        let mut secrets = Vec::new();
        for d in [&first, &second, &first] {
            apply_desired(&store, d, &mut secrets);
            let again = plan(d, &store.read().unwrap(), PlanOptions { allow_mass_removal: true }).unwrap();
            prop_assert!(again.steps.is_empty(), "steps left: {:?}", again.steps.iter().map(|s| &s.address).collect::<Vec<_>>());
        }
        // No rendering of any plan, and not the state's non-hash fields, holds a secret.
        let snapshot = store.read().unwrap();
        let p = plan(&second, &snapshot, PlanOptions { allow_mass_removal: true }).unwrap();
        let outputs = [render::text(&p, false), render::markdown(&p), render::json(&p), roster::export::to_yaml(&snapshot).unwrap()];
        for s in &secrets {
            for o in &outputs {
                prop_assert!(!o.contains(s.as_str()));
            }
        }
    }
}
