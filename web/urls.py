from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView

from web import access_views, battery_views, discovery_views, ops_views, report_views, scenes_views, sheet_views, views

urlpatterns = [
    path("", views.board, name="board"),
    path("board/grid/", views.board_grid, name="board-grid"),
    path("battery/", battery_views.battery, name="battery"),
    path("battery/list/", battery_views.battery_list, name="battery-list"),
    path("manifest.webmanifest", battery_views.manifest, name="manifest"),
    path("sheet/", sheet_views.sheet, name="sheet"),
    path("report/", report_views.report, name="report"),
    path("report.csv", report_views.report_csv, name="report-csv"),
    path("healthz", views.healthz, name="healthz"),
    path("health/", ops_views.health, name="ops-health"),
    path("metrics", ops_views.prometheus_metrics, name="metrics"),
    # Browsers ask for /favicon.ico on pages that name no icon (the Django admin's). Lazy: the icon's
    # cache-busted name is known only once collectstatic has run, not when a command imports the URLs.
    path(
        "favicon.ico",
        RedirectView.as_view(url=lazy(static, str)("icons/icon-192.png"), permanent=True),
        name="favicon",
    ),
    path("k/<str:token>/", access_views.kiosk_open, name="kiosk-open"),
    path("kiosk/<int:pk>/qr.svg", access_views.kiosk_qr, name="kiosk-qr"),
    path("phone/", access_views.phone, name="phone"),
    path("channels/<int:pk>/", scenes_views.channel_detail, name="channel-detail"),
    path("channels/<int:pk>/readings/", scenes_views.channel_readings, name="channel-readings"),
    path("channels/<int:pk>/performer/", scenes_views.channel_performer, name="channel-performer"),
    path("scenes/", scenes_views.scene_list, name="scene-list"),
    path("scenes/new/", scenes_views.scene_create, name="scene-create"),
    path("scenes/<int:pk>/", scenes_views.scene_edit, name="scene-edit"),
    path("scenes/<int:pk>/activate/", scenes_views.scene_activate, name="scene-activate"),
    path("scenes/<int:pk>/capture/", scenes_views.scene_capture, name="scene-capture"),
    path("scenes/<int:pk>/move/", scenes_views.scene_move, name="scene-move"),
    path("scenes/<int:pk>/delete/", scenes_views.scene_delete, name="scene-delete"),
    path("groups/", scenes_views.group_list, name="group-list"),
    path("groups/new/", scenes_views.group_create, name="group-create"),
    path("groups/<int:pk>/", scenes_views.group_edit, name="group-edit"),
    path("groups/<int:pk>/rename/", scenes_views.group_rename, name="group-rename"),
    path("groups/<int:pk>/move/", scenes_views.group_move, name="group-move"),
    path("groups/<int:pk>/delete/", scenes_views.group_delete, name="group-delete"),
    path("groups/<int:pk>/tiles/add/", scenes_views.group_add_channel, name="group-add-channel"),
    path("groups/<int:pk>/tiles/blank/", scenes_views.group_add_blank, name="group-add-blank"),
    path("groups/<int:pk>/tiles/<int:slot>/move/", scenes_views.slot_move, name="slot-move"),
    path("groups/<int:pk>/tiles/<int:slot>/remove/", scenes_views.slot_remove, name="slot-remove"),
    path("groups/<int:pk>/paste/", scenes_views.group_paste, name="group-paste"),
    path("groups/<int:pk>/paste/apply/", scenes_views.group_paste_apply, name="group-paste-apply"),
    path("discovery/", discovery_views.discovery, name="discovery"),
    path("discovery/scan/", discovery_views.discovery_start, name="discovery-start"),
    path("discovery/<int:pk>/", discovery_views.discovery_task, name="discovery-task"),
    path("discovery/<int:pk>/progress/", discovery_views.discovery_progress, name="discovery-progress"),
    path("discovery/<int:pk>/cancel/", discovery_views.discovery_cancel, name="discovery-cancel"),
    path("discovery/found/<int:pk>/add/", discovery_views.discovery_add, name="discovery-add"),
    path("discovery/found/<int:pk>/update/", discovery_views.discovery_update, name="discovery-update"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("web.api.urls")),
]
