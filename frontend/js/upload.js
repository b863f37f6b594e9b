// Shrinks a picture in the browser before upload. The model looks at 224 pixels, so a 1024-pixel
// copy keeps the gist while a phone photo of 8 MB would hit the API's body limit (and, in AWS, the
// 6 MB Lambda payload limit once API Gateway base64-encodes it).

export const MAX_SIDE = 1024;
const KEEP_AS_IS_BYTES = 1_500_000;

/** The file itself when it is already small, else a JPEG copy at most MAX_SIDE pixels on a side.
 *  Pictures the browser cannot decode go up unchanged so the server can say what is wrong. */
export async function shrinkForUpload(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    return file;
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  if (scale === 1 && file.size <= KEEP_AS_IS_BYTES) {
    bitmap.close();
    return file;
  }
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  if (!blob) return file;
  const name = (file.name || "upload").replace(/\.[^.]*$/, "") + ".jpg";
  return new File([blob], name, { type: "image/jpeg" });
}
