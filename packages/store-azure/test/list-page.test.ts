import { describe, expect, it } from "vitest";
import { parseListPage } from "../src/direct-reads.js";

const blob = (name: string, props = "", attrs = "") =>
  `<Blob><Name${attrs}>${name}</Name><Properties><Creation-Time>Thu, 26 Nov 2026 18:00:00 GMT</Creation-Time>` +
  `<Last-Modified>Thu, 26 Nov 2026 18:00:01 GMT</Last-Modified><Etag>0x8DD1</Etag>` +
  `<Content-Length>65536</Content-Length><Content-MD5>abc=</Content-MD5>${props}</Properties>` +
  `<Metadata><Name>not the blob's</Name></Metadata></Blob>`;

const page = (blobs: string, next = "<NextMarker />") =>
  `\uFEFF<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/a" ` +
  `ContainerName="c"><Prefix>t/</Prefix><MaxResults>5000</MaxResults><Blobs>${blobs}</Blobs>${next}</EnumerationResults>`;

describe("parseListPage", () => {
  it("reads each blob's name, size, ETag and time, and the next marker", () => {
    expect(parseListPage(page(blob("t/a") + blob("t/b"), "<NextMarker>2!8!dA--</NextMarker>"))).toEqual({
      blobs: ["t/a", "t/b"].map((name) => ({
        name,
        size: 65536,
        etag: "0x8DD1",
        lastModified: new Date("2026-11-26T18:00:01Z"),
      })),
      next: "2!8!dA--",
    });
  });

  it("reads a page of one blob, and a page of none", () => {
    expect(parseListPage(page(blob("t/only")))?.blobs.map((b) => b.name)).toEqual(["t/only"]);
    expect(parseListPage(page(""))).toEqual({ blobs: [], next: undefined });
    expect(parseListPage(page("", ""))).toEqual({ blobs: [], next: undefined });
  });

  it("keeps spaces, decodes entities and character references once, and URL-decodes encoded names", () => {
    const names = parseListPage(
      page(
        blob(" t/lead and trail ") +
          blob("t/a &amp; b &lt;c&gt; &#x27;d&#39; &amp;amp;") +
          blob("t/%01ctl", "", ' Encoded="true"') +
          blob("t/<![CDATA[x<y]]>"),
      ),
    )?.blobs.map((b) => b.name);
    expect(names).toEqual([" t/lead and trail ", "t/a & b <c> 'd' &amp;", "t/\u0001ctl", "t/x<y"]);
  });

  it("says an answer it does not read is none: another root, or not XML", () => {
    expect(
      parseListPage(`<?xml version="1.0"?><Error><Code>AuthenticationFailed</Code></Error>`),
    ).toBeUndefined();
    expect(parseListPage(page(blob("t/a")).slice(0, 200))).toBeUndefined();
    expect(parseListPage("<html><body>proxy error</body>")).toBeUndefined();
  });
});
