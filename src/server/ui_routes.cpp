// The dashboard page: GET /ui (and /ui/) answers index.html, GET /ui/{file} the page's script,
// styles and icon — all compiled into the binary (server/ui_assets.h), so the page works offline,
// loads nothing from elsewhere, and needs no files beside the binary. Public: the page holds no
// data; it asks for a key and reads /admin/overview and /admin/events (dashboard_routes.cpp).
//
// Headers: the file's Content-Type; `Cache-Control: no-cache` with a strong ETag (a browser
// revalidates, and gets 304 while the binary is the same); a Content-Security-Policy that allows
// only this origin's scripts, styles, images and fetches (no inline script, no framing);
// `X-Content-Type-Options: nosniff`; `Referrer-Policy: no-referrer`.
// Run on HTTP worker threads; reads constant data only.
#include <httplib.h>

#include <string>
#include <string_view>

#include "server/routes.h"
#include "server/ui_assets.h"

namespace kvault {

namespace {

constexpr const char* kCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const char* ContentType(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

const EmbeddedFile* Find(std::string_view name) {
  for (size_t i = 0; i < kEmbeddedUiCount; ++i) {
    if (name == kEmbeddedUi[i].name) return &kEmbeddedUi[i];
  }
  return nullptr;
}

void Serve(const httplib::Request& req, httplib::Response& res, const EmbeddedFile* f) {
  if (!f) {
    res.status = 404;  // the error handler (http_hooks) writes the envelope
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("ETag", f->etag);
  res.set_header("Content-Security-Policy", kCsp);
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  if (req.get_header_value("If-None-Match") == f->etag) {
    res.status = 304;
    return;
  }
  res.set_content(reinterpret_cast<const char*>(f->data), f->size, ContentType(f->name));
}

}  // namespace

void RegisterUiRoutes(httplib::Server& http) {
  auto index = [](const httplib::Request& req, httplib::Response& res) { Serve(req, res, Find("index.html")); };
  http.Get("/ui", index);
  http.Get("/ui/", index);
  http.Get("/ui/:file", [](const httplib::Request& req, httplib::Response& res) {
    Serve(req, res, Find(req.path_params.at("file")));
  });
}

}  // namespace kvault
