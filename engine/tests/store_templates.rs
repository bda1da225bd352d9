//! Templates: names, namespaces, aliases, tags, visibility, delete; each call across two tenants.

mod store_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use nullspace_engine::store::*;
use store_support::*;

#[tokio::test]
async fn reserve_name_claims_namespace_and_hides_other_tenants_names() {
    let f = open().await;
    let t = f.store.reserve_name(&f.a, &name("acme/py"), Visibility::Private).await.unwrap();
    assert_eq!(t.name.as_str(), "acme/py");
    assert_eq!(t.tenant, f.a);
    assert!(t.id.as_str().starts_with("tpl_"));
    assert_eq!(t.aliases.as_deref(), Some(&[][..]));
    assert!(f.dir.path().join("store.db.lock").exists());

    // Same name again by the owner: a conflict it may know about.
    let again = f.store.reserve_name(&f.a, &name("acme/py"), Visibility::Private).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { kind: ObjectKind::Name, .. })));

    // Tenant B gets the same answer for an existing and a free name in A's namespace.
    let taken = f.store.reserve_name(&f.b, &name("acme/py"), Visibility::Private).await.unwrap_err();
    let free = f.store.reserve_name(&f.b, &name("acme/free"), Visibility::Private).await.unwrap_err();
    for e in [&taken, &free] {
        assert!(
            matches!(e, StoreError::PermissionDenied { kind: ObjectKind::Namespace, key } if key == "acme"),
            "{e:?}"
        );
    }
    assert_eq!(taken.to_string(), free.to_string());

    // B has its own namespace.
    let tb = f.store.reserve_name(&f.b, &name("bravo/py"), Visibility::Public).await.unwrap();
    assert_eq!(tb.visibility, Visibility::Public);
}

#[test]
fn names_tags_and_refs_are_validated() {
    for bad in ["py", "/py", "acme/", "Acme/py", "acme/py/x", "acme/-py", "acme/p y"] {
        assert!(bad.parse::<TemplateName>().is_err(), "{bad}");
    }
    for bad in ["", ".x", "-x", "a:b", &"x".repeat(129)] {
        assert!(bad.parse::<Tag>().is_err(), "{bad}");
    }
    assert!("bld_notaulid".parse::<TemplateRef>().is_err());
    assert!("acme/py:".parse::<TemplateRef>().is_err());
    let id = BuildId::generate();
    assert_eq!(id.to_string().parse::<TemplateRef>().unwrap(), TemplateRef::Build(id));
    assert!(" ".parse::<TenantId>().is_err());
}

#[tokio::test]
async fn get_resolves_name_tag_alias_and_build_id_with_tenancy() {
    let f = open().await;
    let b = ready_build(&f.store, &f.a, "acme/py", None).await;
    f.store.assign_tags(&f.a, &TemplateRef::Build(b.id.clone()), &[tag("stable")]).await.unwrap();
    f.store.rename_template(&f.a, &r("acme/py"), &name("acme/python")).await.unwrap();
    let refs = [
        r("acme/python"),
        r("acme/py"),
        r("acme/python:stable"),
        r("acme/py:stable"),
        TemplateRef::Build(b.id.clone()),
    ];
    for reference in &refs {
        let got = f.store.get_template(&f.a, reference).await.unwrap();
        assert_eq!(got.template.id, b.template_id, "{reference}");
        assert_eq!(got.template.name.as_str(), "acme/python");
        let has_build = !matches!(reference, TemplateRef::Name(_));
        assert_eq!(got.build.as_ref().map(|b| &b.id), has_build.then_some(&b.id));
        // Private: B sees nothing, exactly as for a name that does not exist.
        assert!(is_not_found(f.store.get_template(&f.b, reference).await), "{reference}");
    }
    assert!(is_not_found(f.store.get_template(&f.a, &r("acme/nope")).await));
    assert!(is_not_found(f.store.get_template(&f.a, &r("acme/python:nope")).await));
    assert!(is_not_found(f.store.get_template(&f.a, &TemplateRef::Build(BuildId::generate())).await));

    // Public: B reads every form.
    f.store.set_visibility(&f.a, &r("acme/python"), Visibility::Public).await.unwrap();
    for reference in &refs {
        let got = f.store.get_template(&f.b, reference).await.unwrap();
        assert_eq!(got.template.id, b.template_id);
        let tags = got.template.tags.unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].build_id, b.id);
    }
}

#[tokio::test]
async fn list_templates_filters_and_pages_across_tenants() {
    let f = open().await;
    for (t, n, v) in [
        (&f.a, "acme/one", Visibility::Private),
        (&f.a, "acme/two", Visibility::Public),
        (&f.a, "tools/three", Visibility::Private),
        (&f.b, "bravo/four", Visibility::Public),
        (&f.b, "bravo/five", Visibility::Private),
    ] {
        f.store.reserve_name(t, &name(n), v).await.unwrap();
    }
    let names = |p: &Page<Template>| -> Vec<String> { p.items.iter().map(|t| t.name.to_string()).collect() };
    let q = |owner, limit| TemplateQuery { owner, limit, ..Default::default() };
    let all_a = f.store.list_templates(&f.a, &q(Owner::Any, 0)).await.unwrap();
    assert_eq!(names(&all_a), ["acme/one", "acme/two", "bravo/four", "tools/three"]);
    assert_eq!(all_a.next_cursor, None);
    let mine = f.store.list_templates(&f.a, &q(Owner::Mine, 0)).await.unwrap();
    assert_eq!(names(&mine), ["acme/one", "acme/two", "tools/three"]);
    let others = f.store.list_templates(&f.a, &q(Owner::Others, 0)).await.unwrap();
    assert_eq!(names(&others), ["bravo/four"]);
    let all_b = f.store.list_templates(&f.b, &q(Owner::Any, 0)).await.unwrap();
    assert_eq!(names(&all_b), ["acme/two", "bravo/five", "bravo/four"]);

    // Paging by two yields the same list, once each.
    let mut paged = Vec::new();
    let mut query = q(Owner::Any, 2);
    loop {
        let page = f.store.list_templates(&f.a, &query).await.unwrap();
        assert!(page.items.len() <= 2);
        paged.extend(names(&page));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, names(&all_a));

    let ns =
        TemplateQuery { namespace: Some("acme".into()), visibility: Some(Visibility::Public), ..Default::default() };
    let page = f.store.list_templates(&f.b, &ns).await.unwrap();
    assert_eq!(names(&page), ["acme/two"]);
    assert!(page.items[0].tags.is_none());

    f.store.rename_template(&f.a, &r("acme/two"), &name("acme/deux")).await.unwrap();
    let with = TemplateQuery {
        namespace: Some("acme".into()),
        fields: TemplateFields { aliases: true, tags: true },
        ..Default::default()
    };
    let page = f.store.list_templates(&f.b, &with).await.unwrap();
    assert_eq!(names(&page), ["acme/deux"]);
    let aliases = page.items[0].aliases.as_ref().unwrap();
    assert_eq!(aliases.len(), 1);
    assert_eq!(aliases[0].name.as_str(), "acme/two");
    assert_eq!(page.items[0].tags.as_deref(), Some(&[][..]));
}

#[tokio::test]
async fn rename_leaves_alias_and_builds_and_tags_follow() {
    let f = open().await;
    let b1 = ready_build(&f.store, &f.a, "acme/py", None).await;
    let b2 = ready_build(&f.store, &f.a, "acme/py", None).await;
    f.store.assign_tags(&f.a, &TemplateRef::Build(b1.id.clone()), &[tag("stable")]).await.unwrap();
    let t = f.store.rename_template(&f.a, &r("acme/py"), &name("acme/python")).await.unwrap();
    assert_eq!(t.name.as_str(), "acme/python");
    assert_eq!(t.id, b1.template_id);
    let aliases: Vec<String> = t.aliases.unwrap().iter().map(|a| a.name.to_string()).collect();
    assert_eq!(aliases, ["acme/py"]);

    // Builds and tags now show under the new name.
    let builds = f.store.list_builds(&f.a, &r("acme/python"), &BuildQuery::default()).await.unwrap();
    let ids: Vec<_> = builds.items.iter().map(|b| b.id.clone()).collect();
    assert_eq!(ids, [b2.id.clone(), b1.id.clone()]);
    assert!(builds.items.iter().all(|b| b.template.as_str() == "acme/python"));
    let tagged = f.store.get_template(&f.a, &r("acme/python:stable")).await.unwrap();
    assert_eq!(tagged.build.unwrap().id, b1.id);

    // A build requested under the old name lands on the same template.
    let b3 = f.store.create_build(&f.a, new_build("acme/py", Backend::Native)).await.unwrap();
    assert_eq!(b3.template_id, b1.template_id);

    // Conflicts and namespaces.
    f.store.reserve_name(&f.a, &name("acme/other"), Visibility::Private).await.unwrap();
    let clash = f.store.rename_template(&f.a, &r("acme/python"), &name("acme/other")).await;
    assert!(matches!(clash, Err(StoreError::AlreadyExists { .. })));
    f.store.reserve_name(&f.b, &name("bravo/x"), Visibility::Private).await.unwrap();
    let foreign_ns = f.store.rename_template(&f.a, &r("acme/python"), &name("bravo/python")).await;
    assert!(matches!(foreign_ns, Err(StoreError::PermissionDenied { kind: ObjectKind::Namespace, .. })));

    // Renaming back to the alias swaps the two.
    let back = f.store.rename_template(&f.a, &r("acme/python"), &name("acme/py")).await.unwrap();
    assert_eq!(back.name.as_str(), "acme/py");
    let aliases: Vec<String> = back.aliases.unwrap().iter().map(|a| a.name.to_string()).collect();
    assert_eq!(aliases, ["acme/python"]);

    // Tenant B: private is not found, public is read-only.
    let try_b = |store: SqliteStore, b: TenantId| async move {
        store.rename_template(&b, &r("acme/py"), &name("bravo/stolen")).await
    };
    assert!(is_not_found(try_b(f.store.clone(), f.b.clone()).await));
    f.store.set_visibility(&f.a, &r("acme/py"), Visibility::Public).await.unwrap();
    assert!(is_denied(try_b(f.store.clone(), f.b.clone()).await));
    assert_eq!(f.store.get_template(&f.b, &r("acme/py")).await.unwrap().template.name.as_str(), "acme/py");
}

#[tokio::test]
async fn aliases_list_and_remove_across_tenants() {
    let f = open().await;
    f.store.reserve_name(&f.a, &name("acme/v1"), Visibility::Private).await.unwrap();
    for next in ["acme/v2", "acme/v3"] {
        f.store.rename_template(&f.a, &r("acme/v1"), &name(next)).await.unwrap();
    }
    let list = |t: TenantId, s: SqliteStore| async move {
        s.list_aliases(&t, &r("acme/v3")).await.map(|v| v.into_iter().map(|a| a.name.to_string()).collect::<Vec<_>>())
    };
    assert_eq!(list(f.a.clone(), f.store.clone()).await.unwrap(), ["acme/v1", "acme/v2"]);
    assert!(is_not_found(list(f.b.clone(), f.store.clone()).await));
    assert!(is_not_found(f.store.remove_alias(&f.b, &name("acme/v1")).await));

    // The current name is not an alias.
    let primary = f.store.remove_alias(&f.a, &name("acme/v3")).await;
    assert!(matches!(primary, Err(StoreError::Invalid { field: "alias", .. })));

    f.store.set_visibility(&f.a, &r("acme/v3"), Visibility::Public).await.unwrap();
    assert_eq!(list(f.b.clone(), f.store.clone()).await.unwrap(), ["acme/v1", "acme/v2"]);
    assert!(is_denied(f.store.remove_alias(&f.b, &name("acme/v1")).await));

    f.store.remove_alias(&f.a, &name("acme/v1")).await.unwrap();
    assert_eq!(list(f.a.clone(), f.store.clone()).await.unwrap(), ["acme/v2"]);
    assert!(is_not_found(f.store.get_template(&f.a, &r("acme/v1")).await));
    assert!(is_not_found(f.store.remove_alias(&f.a, &name("acme/v1")).await));
    // The freed name can be taken again.
    f.store.reserve_name(&f.a, &name("acme/v1"), Visibility::Private).await.unwrap();
}

#[tokio::test]
async fn set_visibility_only_by_owner() {
    let f = open().await;
    f.store.reserve_name(&f.a, &name("acme/py"), Visibility::Private).await.unwrap();
    assert!(is_not_found(f.store.set_visibility(&f.b, &r("acme/py"), Visibility::Public).await));
    let t = f.store.set_visibility(&f.a, &r("acme/py"), Visibility::Public).await.unwrap();
    assert_eq!(t.visibility, Visibility::Public);
    assert!(is_denied(f.store.set_visibility(&f.b, &r("acme/py"), Visibility::Private).await));
    assert!(f.store.get_template(&f.b, &r("acme/py")).await.is_ok());
    f.store.set_visibility(&f.a, &r("acme/py"), Visibility::Private).await.unwrap();
    assert!(is_not_found(f.store.get_template(&f.b, &r("acme/py")).await));
}

fn tag_map(t: &Template) -> Vec<(String, BuildId)> {
    t.tags.as_ref().unwrap().iter().map(|t| (t.tag.to_string(), t.build_id.clone())).collect()
}

#[tokio::test]
async fn tags_assign_move_and_remove() {
    let f = open().await;
    let b1 = ready_build(&f.store, &f.a, "acme/py", None).await;
    let b2 = ready_build(&f.store, &f.a, "acme/py", None).await;
    let moves = f
        .store
        .assign_tags(&f.a, &TemplateRef::Build(b1.id.clone()), &[tag("stable"), tag("v1"), tag("stable")])
        .await
        .unwrap();
    assert_eq!(moves.len(), 2);
    assert!(moves.iter().all(|m| m.previous.is_none() && m.build_id == b1.id));

    // Move `stable` and add `v2` by `name:tag` of the other build: one call, both or neither.
    f.store.assign_tags(&f.a, &TemplateRef::Build(b2.id.clone()), &[tag("v2")]).await.unwrap();
    let moves = f.store.assign_tags(&f.a, &r("acme/py:v2"), &[tag("stable"), tag("latest")]).await.unwrap();
    assert_eq!(moves[0].previous.as_ref(), Some(&b1.id));
    assert_eq!(moves[0].build_id, b2.id);
    let t = f.store.get_template(&f.a, &r("acme/py")).await.unwrap().template;
    assert_eq!(
        tag_map(&t),
        [
            ("latest".into(), b2.id.clone()),
            ("stable".into(), b2.id.clone()),
            ("v1".into(), b1.id.clone()),
            ("v2".into(), b2.id.clone()),
        ]
    );
    let b2_now = f.store.get_build(&f.a, &b2.id).await.unwrap();
    assert_eq!(b2_now.tags, [tag("latest"), tag("stable"), tag("v2")]);

    // A bare name is not a build.
    let bare = f.store.assign_tags(&f.a, &r("acme/py"), &[tag("x")]).await;
    assert!(matches!(bare, Err(StoreError::Invalid { field: "target", .. })));

    // Not ready: refused, and nothing changed.
    let queued = f.store.create_build(&f.a, new_build("acme/py", Backend::Native)).await.unwrap();
    let refused = f.store.assign_tags(&f.a, &TemplateRef::Build(queued.id.clone()), &[tag("stable"), tag("new")]).await;
    assert!(matches!(refused, Err(StoreError::NotPromotable { .. })));
    let after = f.store.get_template(&f.a, &r("acme/py")).await.unwrap().template;
    assert_eq!(tag_map(&after), tag_map(&t));

    // Tenant B: private not found, public denied; reading works once public.
    let b_assign = |s: SqliteStore, b: TenantId, id: BuildId| async move {
        s.assign_tags(&b, &TemplateRef::Build(id), &[tag("evil")]).await
    };
    assert!(is_not_found(b_assign(f.store.clone(), f.b.clone(), b1.id.clone()).await));
    assert!(is_not_found(f.store.remove_tag(&f.b, &r("acme/py"), &tag("v1")).await));
    f.store.set_visibility(&f.a, &r("acme/py"), Visibility::Public).await.unwrap();
    assert!(is_denied(b_assign(f.store.clone(), f.b.clone(), b1.id.clone()).await));
    assert!(is_denied(f.store.remove_tag(&f.b, &r("acme/py"), &tag("v1")).await));
    assert_eq!(f.store.get_template(&f.b, &r("acme/py:v1")).await.unwrap().build.unwrap().id, b1.id);

    // Remove.
    let was = f.store.remove_tag(&f.a, &r("acme/py"), &tag("v1")).await.unwrap();
    assert_eq!(was, b1.id);
    assert!(is_not_found(f.store.get_template(&f.a, &r("acme/py:v1")).await));
    assert!(is_not_found(f.store.remove_tag(&f.a, &r("acme/py"), &tag("v1")).await));
    assert!(f.store.get_build(&f.a, &b1.id).await.unwrap().tags.is_empty());
}

#[tokio::test]
async fn failed_batch_leaves_no_tag_moved() {
    let f = open().await;
    let b1 = ready_build(&f.store, &f.a, "acme/py", None).await;
    let b2 = ready_build(&f.store, &f.a, "acme/py", None).await;
    f.store.assign_tags(&f.a, &TemplateRef::Build(b1.id.clone()), &[tag("stable"), tag("v1")]).await.unwrap();
    let (a, id2) = (f.a.clone(), b2.id.clone());
    let failed = f
        .store
        .batch(move |b| {
            b.assign_tags(&a, &TemplateRef::Build(id2), &[tag("stable"), tag("v1")])?;
            // The second write fails: the first must be rolled back with it.
            b.assign_tags(&a, &r("acme/py:nope"), &[tag("v1")])
        })
        .await;
    assert!(is_not_found(failed));
    let t = f.store.get_template(&f.a, &r("acme/py")).await.unwrap().template;
    assert_eq!(tag_map(&t), [("stable".into(), b1.id.clone()), ("v1".into(), b1.id.clone())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tag_moves_are_atomic() {
    let f = open().await;
    let mut builds = Vec::new();
    for _ in 0..4 {
        builds.push(ready_build(&f.store, &f.a, "acme/py", None).await.id);
    }
    let store = Arc::new(f.store.clone());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (store, a, id) = (store.clone(), f.a.clone(), builds[i % builds.len()].clone());
        tasks.push(tokio::spawn(async move {
            store.assign_tags(&a, &TemplateRef::Build(id), &[tag("blue"), tag("green")]).await.unwrap();
        }));
    }
    // Meanwhile, every snapshot shows both tags on one build.
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        let t = store.get_template(&f.a, &r("acme/py")).await.unwrap().template;
        let tags = tag_map(&t);
        if !tags.is_empty() {
            assert_eq!(tags.len(), 2);
            assert_eq!(tags[0].1, tags[1].1, "blue and green split: {tags:?}");
            seen.insert(tags[0].1.clone());
        }
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let t = store.get_template(&f.a, &r("acme/py")).await.unwrap().template;
    let tags = tag_map(&t);
    assert_eq!(tags[0].1, tags[1].1);
    assert!(builds.contains(&tags[0].1));
}

#[tokio::test]
async fn delete_refused_while_in_use_unless_forced() {
    let f = open().await;
    let ready = ready_build(&f.store, &f.a, "acme/py", None).await;
    f.store.assign_tags(&f.a, &TemplateRef::Build(ready.id.clone()), &[tag("stable")]).await.unwrap();
    let in_flight = f.store.create_build(&f.a, new_build("acme/py", Backend::Buildkit)).await.unwrap();
    f.store.append_logs(&f.a, &in_flight.id, vec![NewLogEntry::new(LogLevel::Info, "x")]).await.unwrap();

    // Tenant B cannot even see it.
    assert!(is_not_found(f.store.delete_template(&f.b, &r("acme/py"), true).await));

    match f.store.delete_template(&f.a, &r("acme/py"), false).await {
        Err(StoreError::InUse { tags, builds_in_flight, .. }) => {
            assert_eq!(tags, ["stable"]);
            assert_eq!(builds_in_flight, 1);
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    // Untagging alone is not enough while a build is in flight.
    f.store.remove_tag(&f.a, &r("acme/py"), &tag("stable")).await.unwrap();
    match f.store.delete_template(&f.a, &r("acme/py"), false).await {
        Err(StoreError::InUse { tags, builds_in_flight, .. }) => {
            assert!(tags.is_empty());
            assert_eq!(builds_in_flight, 1);
        }
        other => panic!("expected InUse, got {other:?}"),
    }

    f.store.set_visibility(&f.a, &r("acme/py"), Visibility::Public).await.unwrap();
    assert!(is_denied(f.store.delete_template(&f.b, &r("acme/py"), true).await));

    let deleted = f.store.delete_template(&f.a, &r("acme/py"), true).await.unwrap();
    assert_eq!(deleted.builds_deleted, 2);
    assert_eq!(deleted.artifacts.len(), 1);
    assert_eq!(deleted.artifacts[0].0, ready.id);
    assert_eq!(Some(&deleted.artifacts[0].1), ready.artifact.as_ref());
    assert!(is_not_found(f.store.get_template(&f.a, &r("acme/py")).await));
    assert!(is_not_found(f.store.get_build(&f.a, &ready.id).await));
    assert!(is_not_found(f.store.read_logs(&f.a, &in_flight.id, 0, 10).await));

    // An unused template goes without force, and its name is free again.
    f.store.reserve_name(&f.a, &name("acme/py"), Visibility::Private).await.unwrap();
    let d = f.store.delete_template(&f.a, &r("acme/py"), false).await.unwrap();
    assert_eq!(d.builds_deleted, 0);
}
