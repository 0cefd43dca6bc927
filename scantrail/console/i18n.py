"""The console's two languages: English and simplified Chinese. Pure.

The language is the ``lang`` cookie when the user chose one, else the best
match in the browser's ``Accept-Language``, else English. Every string the
pages show goes through :func:`translator`; a key missing in Chinese falls
back to English rather than showing the key.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("en", "zh-CN")

EN: dict[str, str] = {
    "app": "ScanTrail command centre",
    "queue": "Alert queue",
    "bigscreen": "Big screen",
    "trace": "Trace",
    "logout": "Log out",
    "login": "Log in",
    "user": "User name",
    "password": "Password",
    "login_failed": "Wrong user name or password.",
    "throttled": "Too many failed log-ins. Try again in {seconds} s.",
    "signed_in_as": "{user} ({role})",
    "role_officer": "officer",
    "role_supervisor": "supervisor",
    "role_epidemiologist": "epidemiologist",
    "site": "Site",
    "severity": "Severity",
    "kind": "Kind",
    "all": "all",
    "show_closed": "show closed",
    "filter": "Filter",
    "time": "Time",
    "person": "Person",
    "kiosk": "Gate",
    "status": "Status",
    "assigned": "Assigned",
    "actions": "Actions",
    "acknowledge": "Acknowledge",
    "assign": "Assign",
    "assign_to": "assign to",
    "resolve": "Resolve",
    "note": "note",
    "open": "Open",
    "no_alerts": "No alerts match.",
    "live": "live",
    "offline": "reconnecting…",
    "st_new": "new",
    "st_paged": "paged",
    "st_queued": "queued",
    "st_escalated": "escalated",
    "st_exhausted": "nobody answered",
    "st_escalations": "Escalated",
    "escalations_notice": "{n} escalated alert(s) nobody has acknowledged",
    "escalation_step": "step {step}, paging {who} since {since}",
    "escalations_all": "All escalations",
    "st_acknowledged": "acknowledged",
    "st_resolved": "resolved",
    "sev_critical": "critical",
    "sev_warning": "warning",
    "sev_info": "info",
    "case": "Case",
    "evidence": "Evidence",
    "detail": "Detail",
    "history": "Pager and console record",
    "curve": "Valid readings, last 14 days",
    "fever_line": "37.3 °C fever line",
    "baseline": "baseline (median of earlier days) {value} °C",
    "no_baseline": "no baseline yet (needs {n} earlier days)",
    "no_readings": "No stored readings for this person in the last 14 days.",
    "quarantine": "Quarantine",
    "no_quarantine": "No quarantine order on record.",
    "quarantine_order": "{starts} to {ends}, site {site}: {reason}",
    "contacts": "Contacts",
    "readings": "Readings",
    "celsius": "°C",
    "valid": "valid",
    "invalid": "invalid",
    "not_found": "Not found.",
    "forbidden": "You may not see this.",
    "since": "Since",
    "until": "Until",
    "window_min": "Window (min)",
    "depth": "Depth",
    "same_kiosk": "same gate only",
    "run_trace": "Run trace",
    "download_csv": "Download CSV",
    "degree": "Degree",
    "first_contact": "First contact",
    "encounters": "Encounters",
    "sites": "Sites",
    "via": "Via",
    "trace_summary": "{n} contacts of {person} (scans of {person} in the period: {scans})",
    "graph": "Contact graph",
    "trail_of": "Scans of {person} in the period",
    "timeline_legend": "dots: the contact's matching scans; red lines: scans of {person}",
    "timeline": "Encounter timeline",
    "passages_per_minute": "Passages per minute",
    "fevers_today": "Fevers today",
    "silent_kiosks": "Silent kiosks",
    "open_critical": "Open critical alerts",
    "last_heartbeat": "last heartbeat",
    "none": "none",
    "updated": "updated",
    "language": "中文",
    "resolved_by": "resolved by {who}: {note}",
    "action_done": "Done.",
    "times_in": "times in {zone}",
    "influx_down": "InfluxDB did not answer; readings and counts are missing here.",
}

ZH: dict[str, str] = {
    "app": "扫码通行指挥中心",
    "queue": "告警队列",
    "bigscreen": "大屏",
    "trace": "密接追踪",
    "logout": "退出",
    "login": "登录",
    "user": "用户名",
    "password": "密码",
    "login_failed": "用户名或密码错误。",
    "throttled": "登录失败次数过多，请 {seconds} 秒后再试。",
    "signed_in_as": "{user}（{role}）",
    "role_officer": "社区干部",
    "role_supervisor": "值班主管",
    "role_epidemiologist": "流调人员",
    "site": "卡口",
    "severity": "级别",
    "kind": "类型",
    "all": "全部",
    "show_closed": "显示已关闭",
    "filter": "筛选",
    "time": "时间",
    "person": "人员",
    "kiosk": "闸机",
    "status": "状态",
    "assigned": "负责人",
    "actions": "操作",
    "acknowledge": "确认",
    "assign": "指派",
    "assign_to": "指派给",
    "resolve": "办结",
    "note": "备注",
    "open": "查看",
    "no_alerts": "没有符合条件的告警。",
    "live": "实时",
    "offline": "正在重连…",
    "st_new": "新",
    "st_paged": "已呼叫",
    "st_queued": "排队中",
    "st_escalated": "已升级",
    "st_exhausted": "无人应答",
    "st_escalations": "已升级告警",
    "escalations_notice": "{n} 条告警已升级，尚无人确认",
    "escalation_step": "第 {step} 级，自 {since} 起呼叫 {who}",
    "escalations_all": "查看全部升级告警",
    "st_acknowledged": "已确认",
    "st_resolved": "已办结",
    "sev_critical": "紧急",
    "sev_warning": "警告",
    "sev_info": "提示",
    "case": "个案",
    "evidence": "证据",
    "detail": "详情",
    "history": "呼叫与处置记录",
    "curve": "近 14 天有效体温",
    "fever_line": "37.3 °C 发热线",
    "baseline": "个人基线（此前各天中位数）{value} °C",
    "no_baseline": "尚无基线（需要此前 {n} 天的读数）",
    "no_readings": "近 14 天没有此人的体温记录。",
    "quarantine": "隔离",
    "no_quarantine": "无隔离记录。",
    "quarantine_order": "{starts} 至 {ends}，卡口 {site}：{reason}",
    "contacts": "密接",
    "readings": "读数",
    "celsius": "°C",
    "valid": "有效",
    "invalid": "无效",
    "not_found": "未找到。",
    "forbidden": "您无权查看。",
    "since": "开始",
    "until": "结束",
    "window_min": "时间窗（分钟）",
    "depth": "层级",
    "same_kiosk": "仅同一闸机",
    "run_trace": "开始追踪",
    "download_csv": "下载 CSV",
    "degree": "层级",
    "first_contact": "首次接触",
    "encounters": "接触次数",
    "sites": "卡口",
    "via": "经由",
    "trace_summary": "{person} 的密接 {n} 人（期间本人扫码 {scans} 次）",
    "graph": "密接关系图",
    "trail_of": "{person} 期间的扫码记录",
    "timeline_legend": "圆点：密接者的相关扫码；红线：{person} 的扫码",
    "timeline": "接触时间线",
    "passages_per_minute": "每分钟通行",
    "fevers_today": "今日发热",
    "silent_kiosks": "失联闸机",
    "open_critical": "未处理紧急告警",
    "last_heartbeat": "最后心跳",
    "none": "无",
    "updated": "更新于",
    "language": "English",
    "resolved_by": "{who} 办结：{note}",
    "action_done": "已完成。",
    "times_in": "时间为 {zone}",
    "influx_down": "InfluxDB 无响应，此处缺少读数和统计。",
}

MESSAGES = {"en": EN, "zh-CN": ZH}


def negotiate(accept_language: str, chosen: str | None = None) -> str:
    """The chosen language if valid, else the best ``Accept-Language`` match, else English."""
    if chosen in LANGUAGES:
        return chosen
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "en"


def translator(lang: str) -> Callable[..., str]:
    table = MESSAGES.get(lang, EN)

    def t(key: str, **values: object) -> str:
        text = table.get(key) or EN.get(key, key)
        return text.format(**values) if values else text

    return t
