from pybpfguard.agent.posture import Mechanism, Posture, PostureReport, PostureTracker


def test_requested_audit_has_no_enforcement_posture():
    assert PostureReport(False, {"file": Mechanism.FANOTIFY}).state is Posture.UNKNOWN


def test_enforce_only_when_every_class_returns_eperm():
    report = PostureReport(True, {"file": Mechanism.FANOTIFY, "network": Mechanism.CGROUP_BPF})
    assert report.state is Posture.ENFORCE and report.enforce_capable
    assert report.detail == "file=fanotify,network=cgroup_bpf"


def test_a_signal_fallback_class_never_reports_enforce():
    report = PostureReport(True, {"file": Mechanism.BPF_LSM, "deny_comm": Mechanism.SIGNAL})
    assert report.state is Posture.ENFORCE_SIGNAL and not report.enforce_capable


def test_an_audited_class_under_requested_enforce_is_audit_fallback():
    assert PostureReport(True, {"file": Mechanism.AUDIT}).state is Posture.AUDIT_FALLBACK


def test_faults_degrade_and_are_counted_by_the_tracker():
    tracker = PostureTracker()
    assert tracker.move(Posture.ENFORCE) and tracker.transition_id == 1
    assert tracker.move(Posture.DEGRADED) and tracker.degradation_count == 1
    assert not tracker.move(Posture.DEGRADED)
