// The API reference at /docs: Swagger UI from the locally installed fastapi-offline
// package (no CDN, so it works offline and under a CSP without inline scripts).
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: true,
  });
});
