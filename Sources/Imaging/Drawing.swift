// Pictures for people: mask outlines and boxes over an image, and contact sheets of many tiles.

extension RGBImage {
    /// Paints the boundary of `mask` (lung pixels with a 4-neighbour outside the lung or the
    /// image) in `color`, `thickness` pixels wide.
    ///
    /// - Precondition: the mask has this image's size.
    public mutating func drawOutline(of mask: Mask, color: RGB, thickness: Int = 1) {
        precondition(mask.width == width && mask.height == height, "outline mask size differs from image")
        var edge = [Bool](repeating: false, count: width * height)
        for y in 0..<height {
            for x in 0..<width where mask.bits[y * width + x] {
                let outside = x == 0 || y == 0 || x == width - 1 || y == height - 1
                    || !mask.bits[y * width + x - 1] || !mask.bits[y * width + x + 1]
                    || !mask.bits[(y - 1) * width + x] || !mask.bits[(y + 1) * width + x]
                if outside { edge[y * width + x] = true }
            }
        }
        let reach = thickness / 2
        for y in 0..<height {
            for x in 0..<width where edge[y * width + x] {
                fillRect(PixelBox(x: x - reach, y: y - reach, width: thickness, height: thickness), color)
            }
        }
    }

    /// Paints the border of `box`, `thickness` pixels wide, inside the box.
    public mutating func drawRectangle(_ box: PixelBox, color: RGB, thickness: Int = 1) {
        fillRect(PixelBox(x: box.x, y: box.y, width: box.width, height: thickness), color)
        fillRect(PixelBox(x: box.x, y: box.y + box.height - thickness, width: box.width, height: thickness), color)
        fillRect(PixelBox(x: box.x, y: box.y, width: thickness, height: box.height), color)
        fillRect(PixelBox(x: box.x + box.width - thickness, y: box.y, width: thickness, height: box.height), color)
    }

    /// Fills `box` (clipped to the image) with `color`.
    public mutating func fillRect(_ box: PixelBox, _ color: RGB) {
        let x0 = max(0, box.x), x1 = min(width, box.x + box.width)
        let y0 = max(0, box.y), y1 = min(height, box.y + box.height)
        guard x0 < x1, y0 < y1 else { return }
        for y in y0..<y1 {
            for x in x0..<x1 { self[x, y] = color }
        }
    }

    /// Copies `tile` with its top-left corner at (`x`, `y`), clipped to this image.
    public mutating func paste(_ tile: RGBImage, x: Int, y: Int) {
        for ty in 0..<tile.height where y + ty >= 0 && y + ty < height {
            for tx in 0..<tile.width where x + tx >= 0 && x + tx < width {
                self[x + tx, y + ty] = tile[tx, ty]
            }
        }
    }

    /// This image resized to `width`×`height` by `method`, channel by channel.
    public func resized(width newWidth: Int, height newHeight: Int, method: Interpolation) -> RGBImage {
        var out = RGBImage(width: newWidth, height: newHeight)
        for channel in 0..<3 {
            let plane = GrayImage(width: width, height: height, bitDepth: 8,
                                  pixels: stride(from: channel, to: pixels.count, by: 3).map { Float(pixels[$0]) })
            let bytes = plane.resized(width: newWidth, height: newHeight, method: method).bytes()
            for i in 0..<bytes.count { out.pixels[3 * i + channel] = bytes[i] }
        }
        return out
    }
}

/// A grid of equally sized tiles with a gap between them: one picture to check many images at a glance.
public struct ContactSheet {
    public let columns: Int
    public let tileSize: Int
    public let gap: Int
    public let background: RGB

    public init(columns: Int, tileSize: Int, gap: Int = 4, background: RGB = RGB(32, 32, 32)) {
        precondition(columns > 0 && tileSize > 0 && gap >= 0, "contact sheet geometry must be positive")
        self.columns = columns
        self.tileSize = tileSize
        self.gap = gap
        self.background = background
    }

    /// The sheet for `tiles`, each resized (area/linear) to fit `tileSize`×`tileSize`, centred,
    /// with an optional coloured band of `bandHeight` pixels along its top edge.
    ///
    /// - Precondition: `tiles` is not empty.
    public func render(_ tiles: [(image: RGBImage, band: RGB?)], bandHeight: Int = 6) -> RGBImage {
        precondition(!tiles.isEmpty, "a contact sheet needs at least one tile")
        let rows = (tiles.count + columns - 1) / columns
        let cellsWide = min(columns, tiles.count)
        var sheet = RGBImage(width: gap + cellsWide * (tileSize + gap),
                             height: gap + rows * (tileSize + gap), fill: background)
        for (index, tile) in tiles.enumerated() {
            let scale = Double(tileSize) / Double(max(tile.image.width, tile.image.height))
            let w = max(1, Int((Double(tile.image.width) * scale).rounded()))
            let h = max(1, Int((Double(tile.image.height) * scale).rounded()))
            let fitted = tile.image.resized(width: w, height: h, method: scale < 1 ? .area : .linear)
            let cellX = gap + (index % columns) * (tileSize + gap)
            let cellY = gap + (index / columns) * (tileSize + gap)
            sheet.paste(fitted, x: cellX + (tileSize - w) / 2, y: cellY + (tileSize - h) / 2)
            if let band = tile.band {
                sheet.fillRect(PixelBox(x: cellX, y: cellY, width: tileSize, height: bandHeight), band)
            }
        }
        return sheet
    }
}
