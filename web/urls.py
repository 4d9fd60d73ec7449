from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from web import access_views, battery_views, sheet_views, views

urlpatterns = [
    path("", views.board, name="board"),
    path("board/grid/", views.board_grid, name="board-grid"),
    path("battery/", battery_views.battery, name="battery"),
    path("battery/list/", battery_views.battery_list, name="battery-list"),
    path("manifest.webmanifest", battery_views.manifest, name="manifest"),
    path("sheet/", sheet_views.sheet, name="sheet"),
    path("healthz", views.healthz, name="healthz"),
    path("k/<str:token>/", access_views.kiosk_open, name="kiosk-open"),
    path("kiosk/<int:pk>/qr.svg", access_views.kiosk_qr, name="kiosk-qr"),
    path("phone/", access_views.phone, name="phone"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
